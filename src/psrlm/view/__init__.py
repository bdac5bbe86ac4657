"""`psrlm view RUN_DIR [--out DIR] [--serve [--port N]]`: a run's searches as a static site, no server needed.

Writes RUN_DIR/view/ (or --out): index.html, its script and stylesheet, and the run as small data files (site.py).
Open index.html in a browser, or pass --serve to serve the folder on 127.0.0.1 and print the URL.

The page lists every search (per problem: PSRLM's step search, SRLM's scored solutions, test-time search) with
filters on method, iteration, answer, pairs and the oracle's labels; a search opens round by round (the context,
the candidate steps, the judge's verdict matrix in both A/B orders with its explanations, scores, the kept step,
the (best, worst) pair and the rollbacks), and every evaluation sample shows the model's answer and the grader's
verdict. A run folder that is half finished gets the site of what exists, and one line per stage saying what is
missing (printed here and on the site's Run page).

Why the page is written by hand (vanilla JavaScript and CSS, no build step): what it needs is a list with filters
and paging plus one detail view, opened from file:// without network. Dashboards that fit a table viewer
(Datasette, Streamlit, Gradio, TensorBoard) need a Python server running; React/Vue/Svelte need a bundler or a
CDN; static-site generators (MkDocs, Observable Framework, Evidence) render pages at build time and need Node or
a theme for interactive filters. The page is one script of a few hundred lines that puts text into the DOM as
text nodes only (model output is untrusted).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_view_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("run_dir", type=Path, help="a run folder (what `psrlm iterate` writes under paths.run_dir)")
    parser.add_argument("--out", type=Path, help="where to write the site (default: RUN_DIR/view/)")
    parser.add_argument("--serve", action="store_true", help="then serve it on 127.0.0.1 until Ctrl-C")
    parser.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000; 0 picks a free one)")
    return parser


def cmd_view(args: argparse.Namespace) -> int:
    from psrlm.view.runfolder import check_run_dir, run_stages
    from psrlm.view.site import build_site

    if args.serve and not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: give a port between 0 and 65535")
    check_run_dir(args.run_dir)
    stages = run_stages(args.run_dir)
    width = max(len(s.name) for s in stages)
    for s in stages:
        print(s.line(width))
    summary = build_site(args.run_dir, args.out, stages)
    missing = sum(s.state != "done" for s in stages)
    print(f"wrote {summary['searches']} searches ({summary['problems']} problems) and {summary['eval_samples']} "
          f"evaluation samples to {summary['out']} in {summary['seconds']} s; "
          + (f"{missing} stage(s) missing or partial" if missing else "every stage present"))  # fmt: skip
    for path in summary["skipped"]:
        print(f"skipped {path}: not a benchmark result file (no problem_id / response / correct)")
    print(f"open {Path(summary['index']).as_uri()}")
    if args.serve:
        serve(Path(summary["out"]), args.port)
    return 0


def serve(folder: Path, port: int = 8000) -> None:
    """Serve `folder` on 127.0.0.1 only (the site is static; nothing here needs another machine to reach it)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a) -> None:  # one line per request would drown the URL
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise ValueError(f"cannot serve on 127.0.0.1:{port} ({e.strerror}): pick another --port") from None
    with httpd:
        print(f"serving {folder} at http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
