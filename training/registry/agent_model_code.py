"""The code file of the ``stockml-rl-agent`` pyfunc ("models from code": MLflow stores this file with the
model and runs it at load time; it only names the model class, which lives in the package)."""

from mlflow.models import set_model

from training.registry.pyfunc import AgentPyfunc

set_model(AgentPyfunc())
