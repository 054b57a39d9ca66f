"""`python -m reverb_cli` and the `reverb` console script."""

from reverb_cli.commands import main

if __name__ == "__main__":
    main()
