"""kube_emulator: an in-memory Kubernetes API server on aiohttp, for tests, the demo and benchmarks.

It serves what kopf, the `kubernetes` client and kubectl use, with the apiserver's semantics: discovery and
OpenAPI v3, built-in kinds and CRD-served custom resources (structural schema pruning, defaulting, validation
and CEL rules), resourceVersion and generation, the status subresource, merge / JSON / strategic merge patch and
server-side apply, list and watch (selectors, paging, bookmarks, 410), finalizers, namespace termination and
garbage collection, Tables for `kubectl get`. Faults can be injected and requests are counted.

Modules: `store` (objects, the global resourceVersion, watch history), `resources` (served kinds), `cluster`
(the verbs and their rules), `app` (HTTP), `testing` (context managers for tests), `__main__` (the
`kube-emulator` command). See README.md next to this file.
"""
