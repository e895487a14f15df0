"""The Huawei Cloud ECS API client: request signing, typed results, typed and classified errors."""
