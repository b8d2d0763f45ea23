"""`python -m tools.bench.profiled OUT.prof worker [options]`: the stream worker with its event loop's thread under
cProfile from the first SIGWINCH on (faust's worker takes SIGUSR1 and SIGUSR2): `bench --profile` sends it once
the warm-up is applied, so that the profile is the measured part's alone. Written to OUT.prof when the worker
exits."""

from __future__ import annotations

import cProfile
import signal
import sys


def main() -> None:
    out, sys.argv = sys.argv[1], [sys.argv[0], *sys.argv[2:]]
    prof = cProfile.Profile()
    signal.signal(signal.SIGWINCH, lambda *_: prof.enable())  # handlers run on the main (event loop's) thread
    from stream.__main__ import main as worker

    try:
        worker()
    except SystemExit:
        pass
    finally:
        prof.disable()
        prof.dump_stats(out)


if __name__ == "__main__":
    main()
