"""``python -m colopp.image build``, until colopp.cli mounts the sub-app."""

from colopp.image.cli import image_app

image_app(prog_name="colopp image")
