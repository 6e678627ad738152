"""The store's schema as named, ordered, applied-once migrations (the shape of simonw/llm's migrations.py).

Append a new function to change the schema; never edit one that has shipped. `migrate(con)` applies what a
database is missing, so an old file upgrades itself when it is opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection

import duckdb

Migration = Callable[[duckdb.DuckDBPyConnection], None]
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


def migrate(con: duckdb.DuckDBPyConnection, *, only: Collection[str] | None = None) -> list[str]:
    """Apply every migration not yet recorded (of those named in `only`, when given: the schema of an older
    store), all in one transaction: a store is upgraded whole or not at all, and a new one is made with one
    commit rather than one per migration. Returns the names applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT now())"
    )
    done = {row[0] for row in con.execute("SELECT name FROM _migrations").fetchall()}
    pending = [fn for fn in MIGRATIONS if fn.__name__ not in done and (only is None or fn.__name__ in only)]
    if not pending:
        return []
    con.execute("BEGIN TRANSACTION")
    try:
        for fn in pending:
            fn(con)
            con.execute("INSERT INTO _migrations (name) VALUES (?)", [fn.__name__])
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # the migration's own error is the one to report
            con.execute("ROLLBACK")
        raise
    return [fn.__name__ for fn in pending]


@migration
def m001_labelling(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE constitutions (
            id VARCHAR PRIMARY KEY,          -- content hash of the parsed file
            name VARCHAR NOT NULL,
            version VARCHAR,
            source VARCHAR,                  -- path it was loaded from
            body JSON NOT NULL,
            loaded_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE principles (
            constitution_id VARCHAR NOT NULL,
            principle_id VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            weight DOUBLE NOT NULL,
            category VARCHAR,
            position INTEGER NOT NULL,
            PRIMARY KEY (constitution_id, principle_id)
        );
        CREATE TABLE pairs (
            id VARCHAR PRIMARY KEY,          -- hash of normalised prompt + responses in canonical order
            prompt_id VARCHAR NOT NULL,      -- hash of the normalised prompt alone
            prompt VARCHAR NOT NULL,         -- text, or a JSON list of chat messages when is_chat
            is_chat BOOLEAN NOT NULL,
            response_a VARCHAR NOT NULL,
            response_b VARCHAR NOT NULL,
            source VARCHAR,
            source_id VARCHAR,
            metadata JSON,
            created_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE label_jobs (
            job_id VARCHAR PRIMARY KEY,      -- hash of what shapes a verdict: constitution, judge, template, sampling
            constitution_id VARCHAR NOT NULL,
            judge_spec VARCHAR NOT NULL,
            backend VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            template_version VARCHAR NOT NULL,
            confidence_mode VARCHAR NOT NULL,
            sampling JSON NOT NULL,
            created_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            job_id VARCHAR,
            command VARCHAR NOT NULL,
            status VARCHAR NOT NULL,         -- running / finished / interrupted / budget_stopped / failed
            started_at TIMESTAMP DEFAULT now(),
            finished_at TIMESTAMP,
            args JSON,
            n_pairs INTEGER,
            n_calls_planned INTEGER,
            n_calls_cached INTEGER,
            n_calls_sent INTEGER,
            cost DOUBLE
        );
        CREATE TABLE judgements (
            request_hash VARCHAR PRIMARY KEY,
            job_id VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            pair_id VARCHAR NOT NULL,
            constitution_id VARCHAR NOT NULL,
            principle_id VARCHAR NOT NULL,
            ordering VARCHAR NOT NULL,       -- ab: response_a shown first; ba: response_b shown first
            backend VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            template_version VARCHAR NOT NULL,
            raw_text VARCHAR,
            verdict VARCHAR,                 -- A / B: the slot the judge named; NULL when it named none
            p_first DOUBLE,                  -- P(first slot better)
            confidence_source VARCHAR,       -- logprobs / verbalised / self_consistency / verdict
            status VARCHAR NOT NULL,         -- ok / parse_error / judge_error
            tokens_in INTEGER,
            tokens_out INTEGER,
            cost DOUBLE,
            latency_s DOUBLE,
            attempts INTEGER,
            error VARCHAR,
            created_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE preferences (
            job_id VARCHAR NOT NULL,
            pair_id VARCHAR NOT NULL,
            principle_id VARCHAR NOT NULL,
            p_ab DOUBLE,                     -- P(first better | a shown first)
            p_ba DOUBLE,                     -- P(first better | b shown first)
            p_a DOUBLE,                      -- (p_ab + 1 - p_ba) / 2
            consistent BOOLEAN NOT NULL,
            confidence DOUBLE,               -- |2 p_a - 1|
            confidence_source VARCHAR,
            chosen VARCHAR,                  -- a / b / tie
            kept BOOLEAN NOT NULL,
            drop_reason VARCHAR,             -- inconsistent / low_confidence / tie / parse_error / judge_error / pending
            threshold DOUBLE NOT NULL,
            updated_at TIMESTAMP DEFAULT now(),
            PRIMARY KEY (job_id, pair_id, principle_id)
        );
        CREATE TABLE pair_preferences (
            job_id VARCHAR NOT NULL,
            pair_id VARCHAR NOT NULL,
            n_principles INTEGER NOT NULL,
            n_kept INTEGER NOT NULL,
            p_a DOUBLE,                      -- weight-averaged over the kept principles
            confidence DOUBLE,
            chosen VARCHAR,
            principle_agreement DOUBLE,      -- share of judged principles that chose the same side as the pair
            kept BOOLEAN NOT NULL,
            drop_reason VARCHAR,
            updated_at TIMESTAMP DEFAULT now(),
            PRIMARY KEY (job_id, pair_id)
        );
        """
    )


@migration
def m002_label_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE VIEW kept_pairs AS
            SELECT pp.job_id, p.id AS pair_id, p.prompt_id, p.prompt, p.is_chat,
                   CASE WHEN pp.chosen = 'a' THEN p.response_a ELSE p.response_b END AS chosen,
                   CASE WHEN pp.chosen = 'a' THEN p.response_b ELSE p.response_a END AS rejected,
                   pp.p_a, pp.confidence, pp.principle_agreement, pp.n_kept, p.source
            FROM pair_preferences pp JOIN pairs p ON p.id = pp.pair_id
            WHERE pp.kept;

        CREATE VIEW position_bias AS
            SELECT backend, model, principle_id,
                   count(*) AS judgements,
                   avg(CASE WHEN verdict = 'A' THEN 1.0 ELSE 0.0 END) AS first_slot_share,
                   avg(p_first) AS mean_p_first
            FROM judgements WHERE status = 'ok'
            GROUP BY ALL;

        CREATE VIEW consistency AS
            SELECT j.backend, j.model, pr.principle_id,
                   count(*) AS judged,
                   avg(CASE WHEN pr.consistent THEN 1.0 ELSE 0.0 END) AS consistency_rate,
                   avg(CASE WHEN pr.kept THEN 1.0 ELSE 0.0 END) AS kept_rate
            FROM preferences pr JOIN label_jobs j USING (job_id)
            WHERE pr.drop_reason IS DISTINCT FROM 'pending'
              AND pr.drop_reason IS DISTINCT FROM 'parse_error'
              AND pr.drop_reason IS DISTINCT FROM 'judge_error'
            GROUP BY ALL;

        CREATE VIEW confidence_histogram AS
            SELECT job_id,
                   least(floor(confidence * 10) / 10, 0.9) AS bucket,
                   count(*) AS preferences,
                   sum(CASE WHEN kept THEN 1 ELSE 0 END) AS kept
            FROM preferences WHERE confidence IS NOT NULL
            GROUP BY ALL;

        CREATE VIEW drop_reasons AS
            SELECT job_id, coalesce(drop_reason, 'kept') AS reason, count(*) AS preferences
            FROM preferences GROUP BY ALL;

        CREATE VIEW job_costs AS
            SELECT j.job_id, j.judge_spec,
                   (SELECT count(*) FROM judgements x WHERE x.job_id = j.job_id) AS calls,
                   (SELECT coalesce(sum(tokens_in), 0) FROM judgements x WHERE x.job_id = j.job_id) AS tokens_in,
                   (SELECT coalesce(sum(tokens_out), 0) FROM judgements x WHERE x.job_id = j.job_id) AS tokens_out,
                   (SELECT coalesce(sum(cost), 0) FROM judgements x WHERE x.job_id = j.job_id) AS cost,
                   (SELECT count(*) FROM pair_preferences pp WHERE pp.job_id = j.job_id AND pp.kept) AS kept_pairs
            FROM label_jobs j;

        CREATE VIEW cost_per_kept_pair AS
            SELECT job_id, judge_spec, calls, tokens_in, tokens_out, cost, kept_pairs,
                   CASE WHEN kept_pairs > 0 THEN cost / kept_pairs END AS cost_per_kept_pair,
                   CASE WHEN kept_pairs > 0 THEN (tokens_in + tokens_out) / kept_pairs END AS tokens_per_kept_pair
            FROM job_costs;
        """
    )


@migration
def m003_human_labels(con: duckdb.DuckDBPyConnection) -> None:
    # Every label a file gives is kept: each annotator's, and the consensus that speaks for the pair in that
    # import ('label' when the format has one label per pair, 'majority' when it has several annotators).
    # `split` is decided per prompt, so every label of a prompt is on the same side.
    con.execute(
        """
        CREATE TABLE human_labels (
            pair_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,         -- the import's name (--source, default the file's stem)
            annotator VARCHAR NOT NULL,      -- 'label', 'majority', or the annotator's column name
            winner VARCHAR NOT NULL,         -- a / b / tie, in the pair's canonical order
            confidence DOUBLE,               -- consensus rows: 1 for a single label, the vote margin for a majority
            source_line INTEGER,             -- line (or row) of the file it came from
            split VARCHAR,                   -- train / heldout; NULL until `prefgen split`
            imported_at TIMESTAMP DEFAULT now(),
            PRIMARY KEY (pair_id, source, annotator)
        );
        CREATE TABLE human_split (
            id INTEGER PRIMARY KEY,          -- always 1: there is one split per store
            heldout DOUBLE NOT NULL,         -- share of prompts held out
            seed BIGINT NOT NULL,
            created_at TIMESTAMP DEFAULT now()
        );
        -- One human label per pair: the consensus of each import, and a tie where two imports disagree.
        CREATE VIEW human_pair_labels AS
            SELECT h.pair_id, p.prompt_id, any_value(h.split) AS split,
                   CASE WHEN count(DISTINCT h.winner) = 1 THEN any_value(h.winner) ELSE 'tie' END AS winner,
                   CASE WHEN count(DISTINCT h.winner) = 1 THEN min(h.confidence) ELSE 0.0 END AS confidence,
                   string_agg(DISTINCT h.source, '+' ORDER BY h.source) AS sources
            FROM human_labels h JOIN pairs p ON p.id = h.pair_id
            WHERE h.annotator IN ('label', 'majority')
            GROUP BY h.pair_id, p.prompt_id;
        """
    )


@migration
def m004_mixes(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE mixes (
            name VARCHAR PRIMARY KEY,
            content_hash VARCHAR NOT NULL,   -- hash of the ordered rows: the same mix built twice has the same hash
            seed BIGINT NOT NULL,
            human_ratio DOUBLE NOT NULL,     -- requested share of human rows
            realised_ratio DOUBLE,
            n_rows INTEGER NOT NULL,
            inputs JSON NOT NULL,            -- label jobs, human sources, held-out split settings
            filters JSON NOT NULL,           -- judge, AI confidence floor, per-prompt cap, size, margin/weight
            counts JSON NOT NULL,            -- available, excluded, used per source; per principle; shortfall
            created_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE mix_rows (
            mix_name VARCHAR NOT NULL,
            position INTEGER NOT NULL,
            pair_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,         -- human / ai
            origin VARCHAR NOT NULL,         -- the label job id, or the human import(s)
            chosen VARCHAR NOT NULL,         -- a / b
            confidence DOUBLE,
            margin DOUBLE,                   -- TRL margin, when the mix was built with --margin-by-confidence
            weight DOUBLE,                   -- sample weight, when built with --weight-by-confidence
            PRIMARY KEY (mix_name, position)
        );
        """
    )


@migration
def m005_reward_models(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE rm_runs (
            run_id VARCHAR PRIMARY KEY,
            mix_name VARCHAR,
            mix_hash VARCHAR,                -- the mix's content hash: which exact rows trained this model
            base_model VARCHAR NOT NULL,
            config JSON NOT NULL,            -- the full TrainConfig
            data JSON,                       -- counts per source, truncation / drop report
            n_train INTEGER,
            n_members INTEGER NOT NULL,      -- 1, or K for an ensemble
            device VARCHAR,
            dtype VARCHAR,
            duration_s DOUBLE,
            pairs_per_s DOUBLE,
            initial_loss DOUBLE,
            final_loss DOUBLE,
            checkpoint_path VARCHAR NOT NULL,
            status VARCHAR NOT NULL,         -- running / finished / failed
            started_at TIMESTAMP DEFAULT now(),
            finished_at TIMESTAMP
        );
        CREATE TABLE rm_evals (
            eval_id VARCHAR NOT NULL,
            run_id VARCHAR,                  -- NULL when the model was not trained from this store
            model_path VARCHAR NOT NULL,
            split VARCHAR NOT NULL,          -- heldout, train, or the file evaluated
            metric VARCHAR NOT NULL,         -- e.g. accuracy, accuracy.ci_low, ece, by_source.hh.accuracy
            value DOUBLE,
            n INTEGER,
            created_at TIMESTAMP DEFAULT now(),
            PRIMARY KEY (eval_id, metric)
        );
        """
    )


@migration
def m006_soft_labels_calibration_and_mix_search(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        ALTER TABLE rm_runs ADD COLUMN error VARCHAR;     -- why a failed run failed
        ALTER TABLE mix_rows ADD COLUMN p_chosen DOUBLE;  -- P(chosen is better): calibrated judge P, or the
                                                          -- annotators' share; the soft-label target
        ALTER TABLE mixes ADD COLUMN auto JSON;           -- `mix --auto`: candidates, scores, winner and why
        CREATE TABLE calibrations (
            calibration_id VARCHAR PRIMARY KEY,  -- content hash of (judge_spec, template_version, constitution_id)
            judge_spec VARCHAR NOT NULL,
            template_version VARCHAR NOT NULL,
            constitution_id VARCHAR NOT NULL,
            method VARCHAR NOT NULL,             -- platt (fitted) / shrink (too few pairs to fit)
            params JSON NOT NULL,
            n_pairs INTEGER NOT NULL,            -- human train-split pairs with a verdict of this judge
            agreement DOUBLE,                    -- share of them where the judge's side is the humans' side
            ece_before DOUBLE,
            ece_after DOUBLE,                    -- cross-fitted: each pair scored by a map fitted without it
            reliability JSON NOT NULL,           -- per bin of the judge's P: n, mean P before/after, observed
            fitted_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE mix_trials (
            search_id VARCHAR NOT NULL,
            mix_name VARCHAR NOT NULL,
            candidate VARCHAR NOT NULL,
            fold INTEGER NOT NULL,
            n_train INTEGER NOT NULL,            -- rows trained on (human train minus the fold, plus AI rows)
            n_ai INTEGER NOT NULL,
            n_val INTEGER NOT NULL,              -- human pairs of the fold scored
            accuracy DOUBLE,
            settings JSON NOT NULL,
            created_at TIMESTAMP DEFAULT now(),
            PRIMARY KEY (search_id, candidate, fold)
        );
        """
    )


@migration
def m008_judge_template_on_record(con: duckdb.DuckDBPyConnection) -> None:
    # What a label job's requests were rendered from, beyond the store's texts: the template body, mode, system
    # prompt and answer instructions (a few hundred bytes per job, not per call). With the pair, the principle,
    # the order and the sampling, `prefgen show` rebuilds each request exactly; NULL for jobs recorded before.
    con.execute("ALTER TABLE label_jobs ADD COLUMN template JSON")


@migration
def m009_routing_and_declared_splits(con: duckdb.DuckDBPyConnection) -> None:
    # `pinned`: the side was declared at import (`import-human --split`); `prefgen split` never moves it, and
    # every other label of the same prompt follows it (a prompt stays on one side).
    # A route batch: the pairs `prefgen route` sent to annotators, each with the signals that ranked it.
    con.execute(
        """
        ALTER TABLE human_labels ADD COLUMN pinned BOOLEAN DEFAULT false;
        CREATE TABLE route_batches (
            batch_id VARCHAR PRIMARY KEY,
            label_jobs JSON NOT NULL,        -- the label jobs whose verdicts were ranked
            judge VARCHAR,                   -- the --judge filter, if any
            budget INTEGER NOT NULL,
            random_share DOUBLE NOT NULL,    -- share of the budget drawn uniformly (the unbiased slice)
            seed BIGINT NOT NULL,
            format VARCHAR NOT NULL,         -- label-studio / argilla
            out_path VARCHAR NOT NULL,
            model_path VARCHAR,              -- reward-model ensemble whose spread was a signal
            weights JSON NOT NULL,           -- weight of each signal in the score
            counts JSON NOT NULL,            -- candidates, routed, random
            created_at TIMESTAMP DEFAULT now()
        );
        CREATE TABLE route_items (
            batch_id VARCHAR NOT NULL,
            pair_id VARCHAR NOT NULL,
            position INTEGER NOT NULL,       -- order in the batch file
            selection VARCHAR NOT NULL,      -- routed (ranked by value) / random (the unbiased slice)
            rank INTEGER NOT NULL,           -- rank by score among the batch's candidates (1 = most valuable)
            score DOUBLE NOT NULL,
            p_a DOUBLE,                      -- the judges' unfiltered P(a better)
            inconsistency DOUBLE,            -- share of (job, principle) verdicts that flipped with the order
            uncertainty DOUBLE,              -- 1 - |2 P(a better) - 1|
            near_threshold DOUBLE,           -- 1 at the keep threshold, 0 a quarter away or further
            principle_disagreement DOUBLE,   -- 1 when the principles split evenly
            judge_disagreement DOUBLE,       -- NULL with one judge; 1 when the judges split evenly
            rm_spread DOUBLE,                -- NULL without --model; spread of the ensemble's P(a better)
            reason VARCHAR NOT NULL,
            shown VARCHAR NOT NULL,          -- ab / ba: which response annotators see first
            PRIMARY KEY (batch_id, pair_id)
        );
        -- A pair routed by rank in any batch is 'routed' (a biased sample: agreement leaves it out, calibration
        -- weighs it by its inclusion probability since m012); one only ever drawn in a random slice is 'random'.
        CREATE VIEW routed_pairs AS
            SELECT pair_id, CASE WHEN bool_or(selection = 'routed') THEN 'routed' ELSE 'random' END AS selection
            FROM route_items GROUP BY pair_id;
        """
    )


@migration
def m010_rm_run_world_size(con: duckdb.DuckDBPyConnection) -> None:
    # Processes that trained the model data-parallel (`prefgen train --processes N`, `accelerate launch`).
    con.execute("ALTER TABLE rm_runs ADD COLUMN world_size INTEGER DEFAULT 1")


@migration
def m012_route_value_and_inclusion(con: duckdb.DuckDBPyConnection) -> None:
    # What a human label changes in the training mix, per routed pair, and how likely the batch design was to
    # pick the pair: the inclusion probability lets calibration use every labelled pair of a batch, each
    # weighted by how much of the pool it stands for, instead of the random slice alone.
    con.execute(
        """
        ALTER TABLE route_items ADD COLUMN mix_error DOUBLE;   -- P(the mix's AI row is wrong); NULL: none in the mix
        ALTER TABLE route_items ADD COLUMN new_row DOUBLE;     -- 1: the filter dropped the pair, a label adds a row
        ALTER TABLE route_items ADD COLUMN inclusion DOUBLE;   -- probability the batch's design picked the pair
        ALTER TABLE route_items ADD COLUMN calibration_weight DOUBLE;  -- (budget / candidates) / inclusion
        ALTER TABLE route_batches ADD COLUMN calibration JSON; -- the map behind mix_error, per label job
        """
    )


@migration
def m013_input_orientation(con: duckdb.DuckDBPyConnection) -> None:
    # A pair's responses are stored in a canonical order (so one pair read from two files is one row), which
    # differs from the input's for about half the pairs. `input_swapped` records it (NULL: stored before this
    # column existed), and the views below say `chosen` in the input's terms and carry the input's own id, so
    # that joining results back to the input file by `source_id` gives the right answer.
    con.execute(
        """
        ALTER TABLE pairs ADD COLUMN input_swapped BOOLEAN;  -- true: the input's first response is response_b
        CREATE OR REPLACE VIEW kept_pairs AS
            SELECT pp.job_id, p.id AS pair_id, p.prompt_id, p.prompt, p.is_chat,
                   CASE WHEN pp.chosen = 'a' THEN p.response_a ELSE p.response_b END AS chosen,
                   CASE WHEN pp.chosen = 'a' THEN p.response_b ELSE p.response_a END AS rejected,
                   pp.p_a, pp.confidence, pp.principle_agreement, pp.n_kept, p.source, p.source_id,
                   CASE WHEN p.input_swapped IS NULL THEN NULL
                        WHEN p.input_swapped THEN (CASE pp.chosen WHEN 'a' THEN 'b' ELSE 'a' END)
                        ELSE pp.chosen END AS input_chosen
            FROM pair_preferences pp JOIN pairs p ON p.id = pp.pair_id
            WHERE pp.kept;

        -- Every pair's AI preference in the terms of the file it came from: `input_chosen` 'a' is the input's
        -- first response (its response_a column), `input_p_a` the probability that one is better.
        CREATE VIEW input_preferences AS
            SELECT pp.job_id, p.id AS pair_id, p.source, p.source_id, p.input_swapped,
                   CASE WHEN p.input_swapped IS NULL THEN NULL
                        WHEN p.input_swapped AND pp.chosen IN ('a', 'b') THEN (CASE pp.chosen WHEN 'a' THEN 'b' ELSE 'a' END)
                        ELSE pp.chosen END AS input_chosen,
                   CASE WHEN p.input_swapped IS NULL THEN NULL
                        WHEN p.input_swapped THEN 1 - pp.p_a ELSE pp.p_a END AS input_p_a,
                   pp.confidence, pp.kept, pp.drop_reason
            FROM pair_preferences pp JOIN pairs p ON p.id = pp.pair_id;
        """
    )


@migration
def m014_batches_and_cached_tokens(con: duckdb.DuckDBPyConnection) -> None:
    # Prompt caching: how many of a call's input tokens the provider's cache served (charged at the cached
    # rate) or took in (Anthropic cache writes); NULL for calls stored before this migration.
    # Provider batch jobs (`label --batch`): one row per batch handed to a provider, with the calls it holds,
    # so that a killed or restarted run polls the batches it finds instead of paying for the calls again.
    con.execute(
        """
        ALTER TABLE judgements ADD COLUMN tokens_cached INTEGER;
        ALTER TABLE judgements ADD COLUMN tokens_cache_written INTEGER;
        ALTER TABLE judgements ADD COLUMN batch_id VARCHAR;   -- the provider batch that answered it; NULL: asked directly
        CREATE TABLE label_batches (
            batch_key VARCHAR PRIMARY KEY,   -- ours: content hash of the job and the batch's request hashes
            job_id VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,         -- the run that submitted it
            backend VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            provider_batch_id VARCHAR,       -- NULL until the provider accepted it
            status VARCHAR NOT NULL,         -- submitting / submitted / ended / collected / failed
            provider_status VARCHAR,         -- the provider's word (validating, in_progress, expired, ended, ...)
            n_requests INTEGER NOT NULL,
            n_completed INTEGER,
            n_failed INTEGER,
            reserved DOUBLE NOT NULL,        -- what --max-cost set aside for it, at the batch rate
            cost DOUBLE,                     -- charged for its answers, once collected
            error VARCHAR,
            submitted_s DOUBLE NOT NULL,     -- when it was submitted, seconds since the epoch (the provider's clock
                                             -- is compared with it to find a batch whose id was never stored)
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL
        );
        CREATE TABLE label_batch_items (
            batch_key VARCHAR NOT NULL,
            request_hash VARCHAR NOT NULL,   -- the custom_id the provider answers under
            pair_id VARCHAR NOT NULL,
            principle_id VARCHAR NOT NULL,
            ordering VARCHAR NOT NULL,
            bound_in INTEGER NOT NULL,       -- the call's upper bound on input / output tokens: a usage report
            bound_out INTEGER NOT NULL,      -- past it is charged the bound, as for a call asked directly
            PRIMARY KEY (batch_key, request_hash)
        );
        """
    )


@migration
def m015_route_cross_check(con: duckdb.DuckDBPyConnection) -> None:
    # `prefgen route --cross-check`: per AI row of the mix, P(its side is better) by reward models trained
    # without the pair (out of fold), calibrated on the human train pairs; and per batch, how (the margins'
    # scale, the human rows it was fitted on, the AI rows ranked the other way, the base). NULL otherwise.
    con.execute("""
        ALTER TABLE route_items ADD COLUMN rm_check DOUBLE;
        ALTER TABLE route_batches ADD COLUMN cross_check JSON;
    """)
