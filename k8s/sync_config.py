"""Copy the repository's config files into k8s/ so that `kubectl apply -k` can read them.

kustomize reads a file only from its kustomization's own folder or below (its load
restrictor), and a kustomization may not name a folder above itself, so a ConfigMap cannot be
generated from ../../../prometheus/prometheus.yml with the standard `kubectl apply -k`. The
config files stay where every deployment mode reads them (prometheus/, nginx/, ...); each
kustomization keeps a copy under its `files/` folder at the same relative path, e.g.
k8s/components/monitoring/files/prometheus/prometheus.yml. The copies are committed, so a
clone works with no script; tests/deploy fails when one differs from its original.

    python3 k8s/sync_config.py           # refresh the copies after editing a config file
    python3 k8s/sync_config.py --check   # exit 1 and name every copy that is stale
"""

import re
import shutil
import sys
from pathlib import Path

K8S = Path(__file__).resolve().parent
REPO = K8S.parent
# `- key=files/<path>` or `- files/<path>` under a configMapGenerator's `files:`
ENTRY = re.compile(r"^\s*-\s+(?:[\w.-]+=)?files/(\S+)\s*$", re.M)


def copies() -> list[tuple[Path, Path]]:
    """(original, copy) for every generator file under a kustomization's files/ folder."""
    pairs = []
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        for relative in ENTRY.findall(kustomization.read_text()):
            pairs.append((REPO / relative, kustomization.parent / "files" / relative))
    return pairs


def stale() -> list[str]:
    problems = []
    for original, copy in copies():
        if not original.is_file():
            problems.append(f"{copy.relative_to(REPO)}: no original {original.relative_to(REPO)}")
        elif not copy.is_file() or copy.read_bytes() != original.read_bytes():
            problems.append(f"{copy.relative_to(REPO)} differs from {original.relative_to(REPO)}")
    return problems


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python3 k8s/sync_config.py", file=sys.stderr)
        return 1 if problems else 0
    for original, copy in copies():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, copy)
    # a copy no kustomization names any more is removed, so files/ holds only what is used
    wanted = {copy for _, copy in copies()}
    for files_dir in K8S.rglob("files"):
        for path in files_dir.rglob("*"):
            if path.is_file() and path not in wanted:
                path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
