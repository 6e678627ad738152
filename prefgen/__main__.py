"""`python -m prefgen ...` is the `prefgen` command. `accelerate launch -m prefgen train --db DB --mix NAME
--out DIR [options]` runs one process of a data-parallel training (`prefgen train --processes N` launches these
itself)."""

from prefgen.cli import main

if __name__ == "__main__":
    main()
