"""``python -m plumline.sandbox`` runs ``plumline exec`` standalone (the same typer command)."""

from .cli import main

main()
