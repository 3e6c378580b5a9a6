"""/account/tokens/: the signed-in user's personal API tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from cloudpanel.errors import InvalidInput
from cloudpanel.forms import add_service_errors

from . import tokens
from .forms import ApiTokenForm


@login_required
def token_list(request):
    """The list (with last use) and the form; a new token's secret is shown on the answer
    to its POST only, never stored and never shown again."""
    form = ApiTokenForm(request.POST or None, user=request.user)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = tokens.issue_token(request.user, **form.cleaned_data)
        except InvalidInput as exc:
            add_service_errors(form, exc)
        else:
            form = ApiTokenForm(user=request.user)
    rows = list(tokens.tokens_of(request.user))
    for token in rows:
        token.state = tokens.token_state(token)
    context = {
        "tokens": rows,
        "form": form,
        "issued": issued,
    }
    response = render(request, "accounts/tokens.html", context)
    add_never_cache_headers(response)  # the page may carry a secret
    return response


@login_required
@require_POST
def token_revoke(request, pk: int):
    token = get_object_or_404(tokens.tokens_of(request.user), pk=pk)
    tokens.revoke_token(token)
    messages.success(request, f"Token {token.name} revoked: it is refused from now on.")
    return redirect("accounts:tokens")
