"""``python -m pose.synth --out DIR ...`` (the same as ``poselab synth``)."""

import sys

from pose.synth.cli import main

if __name__ == "__main__":
    sys.exit(main())
