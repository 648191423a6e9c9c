"""MNIST: MLP 784-128-10, softmax cross-entropy, accuracy (AlgoPerf's smoke-test workload)."""
from algoperf import spec
from workloads.definition import WorkloadDefinition


class MnistDefinition(WorkloadDefinition):
    name = "mnist"
    base_workload_name = "mnist"
    dataset = "mnist"
    target_metric_name = "accuracy"
    validation_target_value = 0.97
    test_target_value = 0.97
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    # 60,000 official training images: the first 50,000 train, the last 10,000 validate.
    num_train_examples = 50_000
    num_eval_train_examples = 10_000
    num_validation_examples = 10_000
    num_test_examples = 10_000
    eval_batch_size = 10_000
    train_mean = 0.1307
    train_stddev = 0.3081
    max_allowed_runtime_sec = 60
    eval_period_time_sec = 10
    step_hint = 7813


class MnistTinyDefinition(MnistDefinition):
    """The same model on data the project generates (``workloads.datasets.mnist``).

    Sizes follow ``generate_mnist_tiny``'s defaults. The target is reached by AlgoPerf's
    NAdamW baseline in a few seconds on two CPU cores; the budget leaves room for slower
    algorithms and hyperparameter points while keeping a trial under a minute.
    """

    name = "mnist_tiny"
    dataset = "mnist_tiny"
    generated_data = True
    num_train_examples = 10_000
    num_eval_train_examples = 2_000
    num_validation_examples = 2_000
    num_test_examples = 2_000
    eval_batch_size = 1_000
    max_allowed_runtime_sec = 30
    eval_period_time_sec = 1
    step_hint = 2000
