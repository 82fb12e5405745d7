"""Benchmarks: one script per question, each prints a table. Run one from the repository root as a module,
    .venv/bin/python -m bench.bench_pose_stream --help
so that it imports the server's packages (talkinghead, classifier, modules), the other benches and the tests'
helpers as they are, with no sys.path edits and nothing installed. What each measures, and the figures
measured so far: docs/performance.md."""
