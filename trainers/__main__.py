"""``python -m plumline.trainers dpo|kto --data ... --model ... --out ...``: the same typer app as
``plumline train`` (the online loop runs training in its own process)."""

from .cli import main

if __name__ == "__main__":
    main()
