"""The request-side handle on the process's vault."""

from typing import Annotated

from fastapi import Depends, Request

from app.vault.service import Vault


async def get_vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


VaultDep = Annotated[Vault, Depends(get_vault)]
