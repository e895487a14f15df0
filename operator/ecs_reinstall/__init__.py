"""ecs-reinstall-operator: reinstall the OS of Huawei Cloud ECS servers from `EcsReinstall` resources.

`handlers` wires kopf to the pure decisions of `reconcile` and the spec model of `spec`; `cloud` talks to the
ECS API; `kube` reads Secrets and ConfigMaps; `settings` and `metrics` hold the operator-wide configuration
and Prometheus instruments.
"""

__version__ = "0.1.0"
