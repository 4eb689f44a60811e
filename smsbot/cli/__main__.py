"""``python -m smsbot.cli``: the ``smsbot`` command."""

from smsbot.cli import main

if __name__ == "__main__":
    main()
