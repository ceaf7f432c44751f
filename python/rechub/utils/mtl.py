"""Multi-task helpers (torch-rechub's ``torch_rechub.utils.mtl``)."""

__all__ = ["shared_task_layers"]


def shared_task_layers(model):
    """The shared and the task-specific parameters of a model, by name:
    ``(shared_names, [task0_names, task1_names, ...])``. Shared: embeddings, shared experts and
    gates, bottoms; task-specific: towers, task gates, task experts. (torch-rechub returns the
    parameter tensors; rechub's live in the engine, so their names are returned.)"""
    if not hasattr(model, "_model"):
        raise TypeError(f"shared_task_layers: expected a rechub multi-task model, got {type(model).__name__}")
    shared, tasks = model._model.shared_task_layers()
    return list(shared), [list(t) for t in tasks]
