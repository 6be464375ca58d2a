"""notebooks/lora_finetune.ipynb: committed without outputs; its code cells run as a script on a
tiny model (seconds, default run); the notebook itself runs top to bottom in a kernel on the
embedded model (minutes, `make test-slow`)."""

import json
import sys

import nbformat
import pytest

from conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "lora_finetune.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    assert "widgets" not in nb.metadata


def kernel_for_this_interpreter(folder, monkeypatch) -> str:
    """A kernelspec running sys.executable, found first through JUPYTER_PATH.

    The default `python3` spec may belong to another Python; this one cannot.
    """
    spec_dir = folder / "kernels" / "coder-align-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "coder_align test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(folder))
    return "coder-align-test"


def outputs_text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/html", "") or out.data.get("text/plain", ""))
    return "".join(parts)


def tagged(nb, tag):
    [cell] = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def test_notebook_code_cells_run_as_a_script_on_a_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    """Every code cell in order, IPython magics dropped, with the model swapped for a 2-layer
    one right after the cell that picks it: the same calls, files and cross-cell names as the
    kernel run below, without its minutes of training."""
    import matplotlib

    matplotlib.use("Agg")
    out = tmp_path / "outputs"
    monkeypatch.setenv("CODER_ALIGN_NOTEBOOK_OUT", str(out))
    monkeypatch.chdir(NOTEBOOK.parent)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    namespace = {"__name__": "__notebook__"}
    swapped = False
    for cell in cells:
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        exec(compile(source, f"{NOTEBOOK.name}[{cells.index(cell)}]", "exec"), namespace)
        if "MODEL" in namespace and not swapped:  # step 2 ran: the tiny model, a short run
            namespace.update(MODEL=str(tiny_model_dir), EPOCHS=1, MAX_NEW_TOKENS=8, MAX_LENGTH=256)
            swapped = True
    assert swapped and namespace["ROOT"] == REPO_ROOT
    summary = json.loads((out / "adapter" / "summary.json").read_text())
    assert summary["data"]["rows_used"] == 24 and summary["steps"] == 6 and len(summary["samples"]) == 2
    assert len(namespace["before"]) == 2 and namespace["losses"]
    assert (out / "merged" / "model.safetensors").is_file() and not (out / "merged" / "adapter_config.json").exists()
    assert isinstance(namespace["reply"], str) and isinstance(namespace["stopped"], bool)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    out = tmp_path / "outputs"
    monkeypatch.setenv("CODER_ALIGN_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    kernel = kernel_for_this_interpreter(tmp_path / "jupyter", monkeypatch)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name=kernel,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    # it imported this checkout's package through the kernel's sys.path set-up
    assert f"coder_align from: {REPO_ROOT / 'coder_align'}" in outputs_text(nb.cells[4])
    # the loss mask: the answer and its <|EOT|> are the supervised (highlighted) span
    mask = outputs_text(tagged(nb, "loss-mask"))
    assert "supervised (green)" in mask and "<span" in mask and "&lt;|EOT|&gt;</span>" in mask
    # training through main(): the loss fell and a live progress display was shown
    summary = json.loads((out / "adapter" / "summary.json").read_text())
    assert summary["final_loss"] < 0.8 * summary["first_loss"], summary
    assert summary["data"]["rows_used"] == 24
    assert any(o.output_type == "display_data" for o in tagged(nb, "train").outputs)
    # the loss plot is an inline image
    assert any("image/png" in o.get("data", {}) for o in tagged(nb, "plot").outputs)
    # after training both answers stop at <|EOT|> and contain a function
    assert all(s["stopped_at_eot"] and "def " in s["response"] for s in summary["samples"])
    after = outputs_text(tagged(nb, "after"))
    assert after.count("--- BEFORE") == 2 and after.count("--- AFTER [stopped at <|EOT|>]") == 2
    # the merged model, reloaded with plain transformers, answers and stops at <|EOT|>
    merged = outputs_text(tagged(nb, "merged"))
    assert "def cube" in merged and "[stopped at <|EOT|>" in merged
    assert (out / "merged" / "model.safetensors").is_file()
