"""The one seam between the framework-neutral runner and a framework.

The runner asks a backend for: process set-up, seeding, a clock that waits for the device,
checkpoints, and a description of the hardware; the workloads ask it for collectives over
processes (``all_sum``, ``all_gather``) and where the devices are. Nothing else in ``algoperf``
imports a framework.
"""
FRAMEWORKS = ("pytorch", "jax")


def get_backend(framework: str):
    if framework == "pytorch":
        from algoperf.backends.pytorch import PyTorchBackend
        return PyTorchBackend()
    if framework == "jax":
        try:
            from algoperf.backends.jax import JaxBackend
        except ImportError as error:
            raise NotImplementedError(f"--framework=jax needs JAX: pip install -e '.[jax]' "
                                      f"({error})") from None
        return JaxBackend()
    raise ValueError(f"--framework={framework!r} is not one of {', '.join(FRAMEWORKS)}")

