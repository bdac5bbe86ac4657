"""`psrlm export ... --push-to-hub ORG/NAME`: upload an export folder's repos with huggingface_hub's HfApi.

Never called unless asked. No network is reachable where psrlm is built and tested, so this is tested only by the
calls it makes on a recording stand-in for HfApi (tests/test_export.py), never against the Hub itself.
"""

from __future__ import annotations

from pathlib import Path


def push_calls(out: Path, index: dict, private: bool) -> list[tuple[str, dict]]:
    """The HfApi calls that upload every repo of the export at `out`, datasets first (the model cards name
    them): (method name, keyword arguments). The token is left to huggingface_hub (HF_TOKEN or `hf auth login`)."""
    namespace = index.get("namespace")
    if not namespace:
        raise ValueError(f"{out} was exported without a Hub namespace: export again with --push-to-hub ORG/NAME")
    calls = []
    for repo in sorted(index["repos"], key=lambda r: r["type"] != "dataset"):
        repo_id = f"{namespace}/{repo['name']}"
        calls.append(("create_repo", {"repo_id": repo_id, "repo_type": repo["type"], "private": private,
                                      "exist_ok": True}))  # fmt: skip
        calls.append(("upload_folder", {"repo_id": repo_id, "repo_type": repo["type"],
                                        "folder_path": str(Path(out) / repo["path"]),
                                        "commit_message": f"psrlm {index['psrlm_version']} export of run "
                                        f"{index['run']}"}))  # fmt: skip
    return calls


def push(out: Path, index: dict, private: bool = False, api=None) -> list[str]:
    """Make the calls of `push_calls` on `api` (default: a real HfApi, after checking a token is there, so a
    missing login fails before any request). Returns the repo URLs."""
    calls = push_calls(out, index, private)
    if api is None:
        from huggingface_hub import HfApi, get_token

        if not get_token():
            raise ValueError("no Hugging Face token: set HF_TOKEN or run `hf auth login` before --push-to-hub")
        api = HfApi()
    urls = []
    for method, kwargs in calls:
        result = getattr(api, method)(**kwargs)
        if method == "create_repo":
            urls.append(str(result))
    return urls
