"""The ``scratchprop`` command line (stub until the CLI lands)."""
import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scratchprop", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version")
    args = parser.parse_args(argv)
    from . import __version__
    print(f"scratchprop {__version__}")
    return 0
