"""Helpers shared by the benchmark reports: the CPU's name and replacing one suite's section of
docs/performance.md."""
import os
import re


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def replace_section(root, suite, section):
    """Replaces (or appends) the '## SUITE' section of ROOT/docs/performance.md with SECTION."""
    perf = os.path.join(root, "docs", "performance.md")
    text = open(perf).read() if os.path.exists(perf) else "# Performance\n\n"
    pattern = re.compile(r"^## " + re.escape(suite) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    open(perf, "w").write(text)
