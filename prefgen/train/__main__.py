"""`accelerate launch -m prefgen.train --db DB --mix NAME --out DIR [options of prefgen train]`: one process of
a data-parallel training run (`prefgen train --processes N` launches these itself)."""

from prefgen.cli import cli

if __name__ == "__main__":
    cli(["train", *__import__("sys").argv[1:]], prog_name="prefgen train")
