"""``python -m optnb.experiments.refresh_costs [PATH]``: count the training-step FLOPs of every run
the quick and paper plans hold and store them (``optnb.experiments.costs.STORED``), so the dry run
reads them instead of counting. Run it after changing a network; the stored table says which
sources it was counted from (``costs.fingerprint``)."""

from __future__ import annotations

import sys

from optnb.experiments import costs, plans


def main(argv: list[str]) -> int:
    targets = [(run.target, profile) for profile in ("quick", "paper")
               for run in plans.build(profile, available=lambda name: True).runs if run.target is not None]
    counts = costs.refresh(targets, *argv[:1])
    print(f"{len(counts)} step FLOP counts stored, fingerprint {costs.fingerprint()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
