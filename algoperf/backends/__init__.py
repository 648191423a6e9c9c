"""The one seam between the framework-neutral runner and a framework.

The runner asks a backend for: process set-up, seeding, a clock that waits for the device,
checkpoints, and a description of the hardware. Nothing else in ``algoperf`` imports torch.
"""
FRAMEWORKS = ("pytorch", "jax")


def get_backend(framework: str):
    if framework == "pytorch":
        from algoperf.backends.pytorch import PyTorchBackend
        return PyTorchBackend()
    if framework == "jax":
        raise NotImplementedError(
            "--framework=jax: the JAX backend is not implemented yet; use --framework=pytorch")
    raise ValueError(f"--framework={framework!r} is not one of {', '.join(FRAMEWORKS)}")

