"""A local Huawei Cloud ECS API (aiohttp) for development, tests and benchmarks. Plain HTTP on loopback.

API (signed with AK/SK exactly as the gateway checks it; accepts the official SDK unchanged):

- ``POST /v2/{project_id}/cloudservers/{server_id}/reinstallos`` (operation ``reinstall``) and
  ``POST /v1/{project_id}/cloudservers/{server_id}/reinstallos`` (``reinstall_v1``) -> ``{"job_id"}``
- ``POST /v2/{project_id}/cloudservers/{server_id}/changeos`` (``change_os``, images with Cloud-Init) and
  ``POST /v1/{project_id}/cloudservers/{server_id}/changeos`` (``change_os_v1``) -> ``{"job_id"}``: the
  reinstall with another image (``{"os-change": {... "imageid", "isAutoPay"?}}``), checked against the image
  catalogue (``Ecs.0031`` unknown, ``Ecs.0032`` not active, ``Ecs.0007`` Windows or, on v2, no Cloud-Init);
  job type ``changeOS``; on SUCCESS the server's image becomes the new one; ``change_os_requires_stopped``
  (off by default) admits only a stopped ECS or one whose last reinstall / change of OS failed
- ``GET /v1/{project_id}/jobs/{job_id}`` (``get_job``; 404 ``Common.0011`` once a finished job is older than
  ``job_retention_seconds``), ``GET /v1/{project_id}/cloudservers/{server_id}`` (``get_server``)
- ``GET /v2.1/{project_id}/servers/{server_id}/os-instance-actions`` (``list_actions``) and
  ``.../os-instance-actions/{request_id}`` (``get_action``): the server's action log (Nova's)
- ``GET /v1/{project_id}/cloudservers/detail`` (``list_servers``: paged details, ``offset`` a page number,
  ``limit`` <= 1000, ``marker``, ``name``, ``status``, ``flavor``, ``tags``, ``not-tags``), ``GET
  .../cloudservers/{server_id}/tags`` (``get_server_tags``) and ``POST .../tags/action`` (``tag_server``:
  create / delete, the documented key/value rules and at most 10 tags, 204)
- ``X-Client-Token`` on the reinstall and change-OS APIs (replay / ``Ecs.0122`` / ``Ecs.0123`` / ``Ecs.0124``;
  a token used on one API is ``Ecs.0122`` on another); a ``Date`` header in the cloud's time on every answer

Admin API under ``/_emulator`` (no signature, JSON; 400 ``{"error": "..."}`` on bad input):

- ``POST /servers`` {id, name?, project_id?, status ACTIVE|SHUTOFF|ERROR|REBUILD, locked, has_system_disk,
  task_state, os_type Linux|Windows, image_id?, created?, updated?, outcome, fail_code, fail_reason,
  fail_status, job_seconds, init_seconds} -> 201; ``GET /servers``, ``GET|PATCH|DELETE /servers/{id}``
- ``POST /servers/{id}/operations`` {action stop|start|reboot|resize|migrate|rename|tag, user_id?, fail?,
  record_action?, type?, flavor?, name?, set?, remove?} -> {server, action} (409 busy / state refuses);
  ``GET /servers/{id}/actions`` (the action log with events, newest first)
- ``POST /keypairs`` {name}; ``GET /keypairs``
- ``POST /images`` {id (lower-case UUID), name?, os_type Linux|Windows, cloud_init, status
  queued|saving|active|killed|deleted|deactivated} -> 201; ``GET /images``, ``GET|PATCH|DELETE /images/{id}``
- ``POST /credentials`` {access_key, secret_key, security_token?, project_id?}
- ``GET|PUT /config`` {job_seconds, init_seconds, outcome, fail_code, fail_reason, fail_status,
  auto_create_servers, byol_supported, rate_limit {qps, burst}|null, operation_rate_limits {op: {qps, burst}},
  accept_any_security_token, max_clock_skew_seconds, job_retention_seconds, clock_offset_seconds,
  action_log enabled|404|403, action_request_id response|generated, action_time_resolution second|microsecond,
  reinstall_stop_action, change_os_requires_stopped, client_token honoured|ignored, client_token_ttl_seconds}
- ``POST /faults`` {operation reinstall|reinstall_v1|change_os|change_os_v1|get_job|get_server|list_actions|
  get_action|list_servers|get_server_tags|tag_server|*, status?, body?, retry_after?, latency_ms?,
  drop_connection before|after|null, count?, probability?} -> 201 {id, ...};
  ``GET /faults``, ``DELETE /faults`` (all), ``DELETE /faults/{id}``
- ``GET /counters`` -> {requests {"operation:status": n}, accepted_reinstalls {server_id: n} (changes of OS
  included), replayed_reinstalls {server_id: n}, operations {action: n}, expired_job_lookups, throttled,
  faults_hit, total_requests}
- ``GET /reinstalls[?server_id=]`` -> accepted reinstalls and changes of OS (``kind`` reinstall|change_os,
  ``imageid``, fields present, non-secret values, SHA-256 of adminpass and of the decoded user_data; accept
  and end times, outcome, job status, client token, replays)
- ``POST /reset``; ``POST /clock/advance`` {seconds}

Modules: `state` (servers, jobs, lazy clock-driven progress, counters), `actions` (the action log), `operations`
(someone else's stop/start/...), `tokens` (X-Client-Token), `validation` (the reinstall and change-OS body
rules), `tags` (the tag API's rules), `listing` (the server list's query, filters and pages), `auth` (the
gateway's signature check), `faults` (fault injection, rate limit), `errors` (the error shapes and the codes),
`app` / `admin` (routes), `server` (listen), `testing` (`running_emulator`), and `__main__` (the
``ecs-emulator`` CLI). Details in README.md beside this file.
"""
