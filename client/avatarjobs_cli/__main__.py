"""`python -m avatarjobs_cli`, the same as the `avatarjobs` command."""

from avatarjobs_cli.main import app

app(prog_name="avatarjobs")
