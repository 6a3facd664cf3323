"""Which commits' bert_jax package matches a record's code_fingerprint.

  python benchmarks/which_commit.py 3f2a9c0d1e4b [--max 200]

Records carry both git_commit (from the checkout's .git, which a device's copy may have
stale) and code_fingerprint (bert_jax.records.code_fingerprint: the package's .py files as
they were on disk). This walks `git rev-list HEAD` newest first and prints each commit whose
package gives the same fingerprint.
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bert_jax.records import fingerprint  # noqa: E402


def _git(*args: str) -> bytes:
  return subprocess.run(['git', *args], capture_output=True, check=True).stdout


def package_at(commit: str) -> dict[str, bytes]:
  names = _git('ls-tree', '-r', '--name-only', commit, 'bert_jax').decode().split()
  return {n[len('bert_jax/'):]: _git('show', f'{commit}:{n}') for n in names if n.endswith('.py')}


def main() -> int:
  p = argparse.ArgumentParser()
  p.add_argument('fingerprint')
  p.add_argument('--max', type=int, default=200, help='commits to look back')
  args = p.parse_args()
  found = 0
  for commit in _git('rev-list', f'--max-count={args.max}', 'HEAD').decode().split():
    if fingerprint(package_at(commit)) == args.fingerprint:
      print(commit)
      found += 1
  if not found:
    print(f'no commit among the last {args.max} has bert_jax/ with fingerprint '
          f'{args.fingerprint}: the code that ran was uncommitted, or older (--max)',
          file=sys.stderr)
  return 0 if found else 1


if __name__ == '__main__':
  sys.exit(main())
