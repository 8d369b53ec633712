"""Webhooks: tell people when a protection changes hands or loses its replica.

:mod:`~colopp_api.webhooks.classify` turns a protection's events into notification kinds
(pure), :mod:`~colopp_api.webhooks.signing` signs bodies (HMAC-SHA256, pure),
:mod:`~colopp_api.webhooks.notifier` delivers them in the background with retries and logs
every attempt, :mod:`~colopp_api.webhooks.routes` is ``/v1/webhooks``.
"""
