"""(being written)"""

from __future__ import annotations

from fastapi import APIRouter

from service.http import Service


def router(service: Service) -> APIRouter:
    return APIRouter()
