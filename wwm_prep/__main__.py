"""`wwm-prep` and `python -m wwm_prep`: SIGINT is owned from the first line, then the command line is imported and run."""

from wwm_prep.commands import interrupts

interrupts.install()


def main() -> None:
    from wwm_prep.cli import main as command_line

    command_line(prog_name="wwm-prep")


if __name__ == "__main__":
    main()
