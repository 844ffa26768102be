"""Signing in to the portal as an office user would: a link to a form sends a
stranger to the sign-in page and, once signed in, back to that form; a
wrong password is told and lets no one in; signing out ends the session."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from service.auth import SESSION_COOKIE
from tests.browser.conftest import (
    USERNAME,
    Problems,
    Service,
    new_context,
    submit_sign_in,
    watched,
)
from tests.browser.test_lforms_e2e import Portal, load_form
from tests.support.callers import PASSWORD

QID = "eocco329-initial"


def test_sign_in_returns_to_the_form_asked_for_and_sign_out_ends_the_session(
    browser: Browser, service: Service, page_problems: Problems
) -> None:
    context = new_context(browser)  # nobody signed in
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/?q={QID}")
        expect(page).to_have_url(f"{service.url}/signin?next=%2F%3Fq%3D{QID}")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#problem")).to_have_count(0)

        # a wrong password: told so, still on the sign-in page, no session
        submit_sign_in(page, USERNAME, "not " + PASSWORD)
        expect(page.locator("#problem")).to_have_text("Wrong user name or password.")
        expect(page).to_have_url(f"{service.url}/signin")
        expect(page.locator("#signin")).to_be_visible()
        assert [c for c in context.cookies() if c["name"] == SESSION_COOKIE] == []
        # the page of a refused sign-in is a page, not an error: nothing logged
        assert page_problems.errors == []

        # the right one: back to the form the link named
        submit_sign_in(page, USERNAME, PASSWORD)
        expect(page).to_have_url(f"{service.url}/?q={QID}")
        # the form chosen; it opens once the patient and the prescriber are named
        expect(page.locator("#questionnaire")).to_have_value(QID)
        portal = Portal(page, service, load_form(service, QID)).start()
        first = next(i for i in portal.form.questions() if not i.conditional)
        expect(portal.item(first.link_id)).to_contain_text(first.text)
        expect(page.locator("#signed-in")).to_contain_text(USERNAME.title())
        (session,) = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
        assert session["httpOnly"] and session["sameSite"] == "Strict", session
        # the session is what lets the page call the API
        assert page.request.get(f"{service.url}/Questionnaire/{QID}").status == 200

        # signing out: back on the sign-in page, and the portal asks to sign in again
        page.click("#signout button[type=submit]")
        expect(page).to_have_url(f"{service.url}/signin")
        expect(page.locator("#signin")).to_be_visible()
        assert [c for c in context.cookies() if c["name"] == SESSION_COOKIE] == []
        page.goto(f"{service.url}/")
        expect(page).to_have_url(f"{service.url}/signin?next=%2F")
        expect(page.locator("#signin")).to_be_visible()

        # the ended session is ended at the service, not only forgotten by the browser
        context.add_cookies(
            [{"name": SESSION_COOKIE, "value": session["value"], "url": service.url}]
        )
        assert page.request.get(f"{service.url}/Questionnaire/{QID}").status == 401
        page.goto(f"{service.url}/?q={QID}")
        expect(page).to_have_url(re.compile(re.escape(f"{service.url}/signin?next=")))
        expect(page.locator("#signin")).to_be_visible()
    finally:
        context.close()
    assert page_problems.errors == []
