"""``python -m mrdiffusion.hvae train|sample ...`` (also under ``torchrun``)."""

from .cli import main

raise SystemExit(main())
