"""Where a vLLM engine's IPC socket files go (llm/vllm_backend.py); no engine starts here."""

from __future__ import annotations

import os


def test_an_engines_ipc_folder_leaves_room_for_vllms_socket_names(tmp_path):
    """vLLM names its sockets ``<folder>/<uuid4>``, and a socket address holds 107 bytes: a temp folder
    too deep for that gets the folder in /tmp instead, and None where no parent can take it."""
    from plumline.llm.vllm_backend import IPC_DIR_PREFIX, IPC_PATH_MAX, private_ipc_dir

    short = private_ipc_dir((str(tmp_path),)) if len(str(tmp_path)) < 40 else None
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    made = [p for p in (short, private_ipc_dir((str(deep), "/tmp"))) if p is not None]
    try:
        assert made[-1].startswith("/tmp/" + IPC_DIR_PREFIX)  # the deep folder was passed over
        for folder in made:
            assert os.path.isdir(folder) and len(os.path.join(folder, "x" * 36).encode()) <= IPC_PATH_MAX
        assert private_ipc_dir((str(deep),)) is None
        assert private_ipc_dir((str(tmp_path / "missing"),)) is None
    finally:
        for folder in made:
            os.rmdir(folder)
