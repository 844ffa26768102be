// The portal, a DTR client of this service, as a prescriber's office works
// in it: the patient and the prescriber named first (the member's Coverage
// is what $questionnaire-package is asked with), the chosen Questionnaire
// rendered with LHC-Forms with the payer's draft response merged in (answer
// lists expanded by this service's ValueSet/$expand), drafts kept on the
// server (/drafts), the submission to $evaluate made once however often
// Submit is pressed, the result shown at the top in plain words with its
// notice, and the office's earlier requests (/submissions).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const FHIR_JSON = "application/fhir+json";
  const DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/";
  // the draft's links to the coverage, the order and its intended use, which
  // the completed response carries on
  const CONTEXT_EXTENSIONS = [DTR + "qr-coverage", DTR + "qr-context", DTR + "intendedUse"];
  const INFORMATION_ORIGIN = DTR + "information-origin";
  const TERMINOLOGY_SERVER =
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-preferredTerminologyServer";
  const INITIAL_EXPRESSION =
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression";
  // the extensions this project publishes, named once in Python and given
  // by the page (service/portal.py)
  const published = (name) => document.querySelector(`meta[name="${name}"]`).content;
  // review/request.py reads the request's priority and prescriber here
  const PRIORITY_EXTENSION = published("priority-extension");
  const NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi";
  // a draft keeps the member's birth date here too: a form whose birth-date
  // question is hidden (or that has none) still reopens with it
  const BIRTH_DATE_EXTENSION = published("birth-date-extension");
  const MEMBER_ID = /^[A-Za-z0-9.-]{1,64}$/;
  const params = new URLSearchParams(location.search);
  // the session's CSRF token: every request that changes something carries it
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const POST_HEADERS = { "Content-Type": FHIR_JSON, Accept: FHIR_JSON, "X-CSRF-Token": CSRF };
  // the package on the page: {questionnaire, draft, libraries, birthDates
  // (paths of linkIds to the birth-date questions), depth and text by linkId}
  let loaded = null;
  // this form session: {id (the response's and its draft's id), draftSaved,
  // submitted: {key, authored} of the last response sent}
  let session = null;
  let busy = false;
  // the form's answers as they are typed, in this tab's sessionStorage (gone
  // when the tab closes or the office signs out): a lapsed sign-in loses
  // nothing, and the work comes back after signing in again
  const UNSENT = "dtr.portal.unsent";
  window.portalStatus = "idle";
  window.draftStatus = "none";

  // --- small helpers ---------------------------------------------------------------

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  function say(message) {
    $("status").textContent = message;
  }

  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function issues(body) {
    return ((body && body.issue) || []).map((i) => i.diagnostics).join("\n");
  }

  async function call(path, options) {
    const reply = await fetch(path, options);
    const text = await reply.text();
    const body = text ? JSON.parse(text) : null;
    if (!reply.ok) {
      const error = new Error(issues(body) || `${reply.status} ${reply.statusText}`);
      error.status = reply.status;
      throw error;
    }
    return body;
  }

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    Object.entries(attributes || {}).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }

  function walk(items, path, visit) {
    (items || []).forEach((item) => {
      const here = [...path, item.linkId];
      visit(item, here);
      walk(item.item, here, visit);
    });
  }

  // --- the patient and the prescriber -------------------------------------------------

  // the NPI check digit: Luhn over the prefix 80840 and the first nine digits
  // (review/request.py npi_valid)
  function npiValid(npi) {
    if (!/^[0-9]{10}$/.test(npi)) return false;
    const digits = ("80840" + npi.slice(0, 9)).split("").map(Number).reverse();
    let total = 0;
    digits.forEach((digit, position) => {
      const doubled = position % 2 === 0 ? digit * 2 : digit;
      total += doubled > 9 ? doubled - 9 : doubled;
    });
    return (10 - (total % 10)) % 10 === Number(npi[9]);
  }

  function today() {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  }

  function member() {
    return {
      name: $("patient-name").value.trim(),
      memberId: $("member-id").value.trim(),
      birthDate: $("birth-date").value,
      prescriber: $("prescriber-name").value.trim(),
      npi: $("npi").value.trim(),
      expedited: $("expedited").checked,
    };
  }

  const CHECKS = {
    "patient-name": (m) => (m.name ? "" : "Enter the patient's name."),
    "member-id": (m) =>
      MEMBER_ID.test(m.memberId)
        ? ""
        : "Enter the member id from the plan's card (letters, digits, '-' or '.').",
    "birth-date": (m) => {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(m.birthDate)) return "Enter the patient's birth date.";
      if (m.birthDate < "1850-01-01" || m.birthDate > today()) {
        return "The birth date must be a past date.";
      }
      return "";
    },
    "prescriber-name": (m) => (m.prescriber ? "" : "Enter the prescriber's name."),
    npi: (m) =>
      npiValid(m.npi) ? "" : "Enter the prescriber's 10-digit NPI (its check digit is wrong).",
  };

  // every field checked, each problem shown beside its field; the first
  // field with a problem focused
  function identityValid(focus) {
    const given = member();
    let first = null;
    Object.entries(CHECKS).forEach(([id, check]) => {
      const problem = check(given);
      $(`${id}-problem`).textContent = problem;
      if (problem) {
        $(id).setAttribute("aria-invalid", "true");
        first = first || $(id);
      } else {
        $(id).removeAttribute("aria-invalid");
      }
    });
    if (first && focus) first.focus();
    return first === null;
  }

  function coverage(m) {
    // the member's coverage with this plan, as a DTR client would send it
    return {
      resourceType: "Coverage",
      id: "portal-coverage",
      status: "active",
      subscriberId: m.memberId,
      beneficiary: subject(m),
      payor: [{ display: "this plan" }],
    };
  }

  function subject(m) {
    return { reference: `Patient/${m.memberId}`, display: m.name, identifier: { value: m.memberId } };
  }

  function author(m) {
    return { display: m.prescriber, identifier: { system: NPI_SYSTEM, value: m.npi } };
  }

  // the fields, from a stored or saved response
  function fillIdentity(response) {
    const subj = response.subject || {};
    const id = (subj.identifier && subj.identifier.value) || (subj.reference || "").split("/").pop();
    if (subj.display) $("patient-name").value = subj.display;
    if (id) $("member-id").value = id;
    const auth = response.author || {};
    if (auth.display) $("prescriber-name").value = auth.display;
    if (auth.identifier && auth.identifier.value) $("npi").value = auth.identifier.value;
    const extensions = response.extension || [];
    const priority = extensions.find((e) => e.url === PRIORITY_EXTENSION);
    $("expedited").checked = Boolean(priority && priority.valueCode === "expedited");
    const born = extensions.find((e) => e.url === BIRTH_DATE_EXTENSION);
    if (born && born.valueDate) $("birth-date").value = born.valueDate;
  }

  // --- the form ---------------------------------------------------------------------

  async function fetchPackage(m, source) {
    const parameter = [{ name: "coverage", resource: coverage(m) }];
    if (source.context) {
      parameter.push({ name: "context", valueString: source.context });
    } else {
      parameter.push({ name: "questionnaire", valueCanonical: source.canonical });
    }
    const body = await call("/Questionnaire/$questionnaire-package", {
      method: "POST",
      headers: POST_HEADERS,
      body: JSON.stringify({ resourceType: "Parameters", parameter }),
    });
    const bundle = (body.parameter || []).find((p) => p.name === "packagebundle");
    if (!bundle) {
      const outcome = (body.parameter || []).find((p) => p.name === "outcome");
      const found = outcome ? outcome.resource.issue.map((i) => i.diagnostics) : [];
      throw new Error(["No form was returned.", ...found].join("\n"));
    }
    const resources = bundle.resource.entry.map((e) => e.resource);
    return {
      questionnaire: resources[0],
      draft: resources[1],
      libraries: resources.filter((r) => r.resourceType === "Library"),
    };
  }

  function decoded(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  // the CQL definitions ("Library"."name") of the package's prepopulation
  // Libraries that are the Patient's birthDate, read from their ELM
  function birthDateDefinitions(libraries) {
    const found = new Set();
    libraries.forEach((library) => {
      (library.content || [])
        .filter((c) => c.contentType === "application/elm+json" && c.data)
        .forEach((content) => {
          let elm;
          try {
            elm = JSON.parse(decoded(content.data)).library;
          } catch {
            return;
          }
          const name = elm.identifier && elm.identifier.id;
          ((elm.statements && elm.statements.def) || []).forEach((def) => {
            let expression = def.expression || {};
            if (expression.type === "Property" && expression.path === "value") {
              expression = expression.source || {};
            }
            const source = expression.source || {};
            if (
              expression.type === "Property" &&
              expression.path === "birthDate" &&
              (source.name === "Patient" || expression.scope === "Patient")
            ) {
              // as a form released up to -r3 names it ("Library"."define"),
              // and as later ones do (text/cql-identifier: the define alone)
              found.add(`"${name}"."${def.name}"`);
              found.add(def.name);
            }
          });
        });
    });
    return found;
  }

  // the paths (linkIds from the top) of the date questions the member's
  // birth date answers: those the payer prefills from the Patient's
  // birthDate (their CQL initialExpression), else those named birth_date
  function birthDateQuestions(questionnaire, libraries) {
    const definitions = birthDateDefinitions(libraries);
    const prefilled = [];
    const named = [];
    walk(questionnaire.item, [], (item, path) => {
      if (item.type !== "date") return;
      const initial = (item.extension || []).find(
        (e) => e.url === INITIAL_EXPRESSION && e.valueExpression,
      );
      if (initial && definitions.has(initial.valueExpression.expression)) prefilled.push(path);
      if (/(^|[._])birth_?date$/i.test(item.linkId)) named.push(path);
    });
    return prefilled.length ? prefilled : named;
  }

  function answerAt(items, path) {
    let level = items || [];
    for (let i = 0; i < path.length; i++) {
      const node = level.find((it) => it.linkId === path[i]);
      if (!node) return null;
      if (i === path.length - 1) return node.answer || null;
      level = node.item || [];
    }
    return null;
  }

  function setAnswers(items, path, answers) {
    let level = items;
    path.forEach((linkId, i) => {
      let node = level.find((it) => it.linkId === linkId);
      if (!node) {
        node = { linkId };
        level.push(node);
      }
      if (i === path.length - 1) {
        node.answer = answers;
      } else {
        node.item = node.item || [];
        level = node.item;
      }
    });
  }

  // the answers of a response as [path, answers] pairs
  function flatten(items) {
    const out = [];
    walk(items, [], (item, path) => {
      if (item.answer) out.push([path, item.answer]);
    });
    return out;
  }

  // the copy LHC-Forms renders: CQL left out (LHC-Forms runs FHIRPath, not
  // CQL: the EHR prefill is a DTR client's; this portal shows what the
  // payer's draft holds), answer lists expanded by this service, and the
  // birth-date questions read-only (the patient's birth date above answers them)
  function renderable(questionnaire, birthDates) {
    const copy = structuredClone(questionnaire);
    const readOnly = new Set(birthDates.map((path) => path[path.length - 1]));
    const isCql = (e) =>
      e.url.endsWith("initialExpression") &&
      ["text/cql", "text/cql-identifier"].includes(e.valueExpression.language);
    copy.extension = (copy.extension || []).filter(
      (e) => !e.url.endsWith("launchContext") && !e.url.endsWith("cqf-library"),
    );
    walk(copy.item, [], (item) => {
      if (item.extension) item.extension = item.extension.filter((e) => !isCql(e));
      if (item.answerValueSet) {
        // said on each item (LHC-Forms keeps an item's setting through the
        // merge of a draft response, not the form's): this page's origin,
        // in place of what a form released before -r4 left unsaid
        item.extension = [
          ...(item.extension || []).filter((e) => e.url !== TERMINOLOGY_SERVER),
          { url: TERMINOLOGY_SERVER, valueUrl: location.origin },
        ];
      }
      if (readOnly.has(item.linkId)) item.readOnly = true;
    });
    return copy;
  }

  async function render(items) {
    const m = member();
    const answers = structuredClone(items || []);
    if (m.birthDate) {
      loaded.birthDates.forEach((path) => setAnswers(answers, path, [{ valueDate: m.birthDate }]));
    }
    let form = LForms.Util.convertFHIRQuestionnaireToLForms(
      renderable(loaded.questionnaire, loaded.birthDates),
      "R4",
    );
    if (answers.length) {
      // what the payer filled in (its records, the earlier answers), a draft's
      // answers, and the patient's birth date
      const response = { ...loaded.draft, item: answers };
      form = LForms.Util.mergeFHIRDataIntoLForms("QuestionnaireResponse", response, form, "R4");
    }
    $("formContainer").innerHTML = "";
    await LForms.Util.addFormToPage(form, "formContainer", { fhirVersion: "R4" });
    markPlanAnswers();
  }

  // the answers the payer filled in from its own records (a renewal's earlier
  // approval) say so beside their question (the note is the stylesheet's,
  // .plan-answer): the office checks them rather than takes them as its own.
  // A reopened pended request's draft marks every earlier answer as the
  // server's too; there the note above the form says where they came from
  function markPlanAnswers() {
    planAnswers = new Set();
    if (loaded.context) return;
    flatten(loaded.draft.item || [])
      .filter(([, answers]) =>
        answers.some((a) =>
          (a.extension || []).some(
            (e) =>
              e.url === INFORMATION_ORIGIN &&
              (e.extension || []).some((s) => s.url === "source" && s.valueCode === "auto-server"),
          ),
        ),
      )
      .forEach(([path]) => planAnswers.add(path[path.length - 1]));
    notePlanAnswers();
  }

  // again whenever LHC-Forms draws items: a question shown later (its
  // enableWhen met) gets its note when it appears
  let planAnswers = new Set();
  function notePlanAnswers() {
    planAnswers.forEach((linkId) => {
      const node = itemElement(linkId);
      if (node && !node.classList.contains("plan-answer")) node.classList.add("plan-answer");
    });
  }
  new MutationObserver(() => {
    if (loaded && planAnswers.size) notePlanAnswers();
  }).observe($("formContainer"), { childList: true, subtree: true });

  function clearForm(message) {
    loaded = null;
    session = null;
    $("formContainer").innerHTML = "";
    $("submit").disabled = true;
    $("save-draft").disabled = true;
    $("reopened").hidden = true;
    $("reply").hidden = true;
    $("draft-note").hidden = true;
    if (message) say(message);
  }

  // source: {canonical} (a new request), {context} (a pended request
  // reopened), {draft: saved draft} (a draft taken up again) or {restored:
  // the answers kept in this tab when the sign-in lapsed}
  async function loadForm(source) {
    window.portalStatus = "loading";
    $("error").hidden = true;
    $("submit").disabled = true;
    $("save-draft").disabled = true;
    const m = member();
    const restored = source.restored;
    const context = source.context || (restored && restored.context);
    const canonical = source.draft
      ? source.draft.questionnaire
      : restored
        ? restored.response.questionnaire
        : source.canonical;
    const fetched = await fetchPackage(m, context ? { context } : { canonical });
    loaded = {
      ...fetched,
      birthDates: birthDateQuestions(fetched.questionnaire, fetched.libraries),
      context,
      depth: new Map(),
      text: new Map(),
    };
    walk(loaded.questionnaire.item, [], (item, path) => {
      loaded.depth.set(item.linkId, path.length);
      loaded.text.set(item.linkId, item.text || item.linkId);
    });
    session = {
      id: source.draft ? source.draft.id : restored ? restored.response.id : newId(),
      draftSaved: Boolean(source.draft) || Boolean(restored && restored.draftSaved),
      submitted: null,
    };
    const items = source.draft
      ? source.draft.response.item
      : restored
        ? restored.response.item
        : loaded.draft.item;
    if (!$("birth-date").value) {
      // a reopened request: the birth date it answered before
      const given = loaded.birthDates.map((p) => answerAt(items, p)).find((a) => a && a[0]);
      if (given && given[0].valueDate) $("birth-date").value = given[0].valueDate;
    }
    const q = loaded.questionnaire;
    const option = [...$("questionnaire").options].find((o) => o.value === q.id);
    if (option) $("questionnaire").value = q.id;
    await render(items);
    if (source.canonical) {
      // a new request: the address names its form, not an earlier draft or result
      history.replaceState(null, "", `/?q=${encodeURIComponent(q.id)}`);
    }
    $("reopened").hidden = !context;
    await showReply(context);
    $("draft-note").hidden = !source.draft;
    if (source.draft) {
      $("draft-note").textContent = `Draft saved ${source.draft.shown.updated}: ${source.draft.label}.`;
    }
    $("submit").disabled = false;
    $("save-draft").disabled = false;
    say("");
    window.portalStatus = "ready";
  }

  // a pended request reopened: what was asked of the office, where the
  // reply's documents and note are given, and the questions still to answer
  async function showReply(context) {
    $("reply").hidden = !context;
    $("submit").textContent = context ? "Send reply" : "Submit for determination";
    $("reply-note").value = "";
    $("reply-documents").value = "";
    if (!context) return;
    const d = await call(`/determinations/${encodeURIComponent(context)}`);
    const asked = (d.review || {}).requested;
    $("reply-asked").textContent = asked
      ? `The pharmacist asks for: ${asked}`
      : "Answer the highlighted questions; attach anything that supports them.";
    highlightMissing(d.missingQuestions || []);
  }

  // the reply: the response, the pended request's id, the note and each document
  async function replyParameters(response) {
    const parameter = [
      { name: "response", resource: response },
      { name: "context", valueString: loaded.context },
    ];
    const note = $("reply-note").value.trim();
    if (note) parameter.push({ name: "note", valueString: note });
    for (const file of $("reply-documents").files) {
      const attachment = { title: file.name, data: await base64Of(file) };
      if (file.type) attachment.contentType = file.type;
      parameter.push({ name: "document", valueAttachment: attachment });
    }
    return { resourceType: "Parameters", parameter };
  }

  async function base64Of(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  function openChosen() {
    if (!identityValid(true)) {
      clearForm("Name the patient and the prescriber to open the form.");
      window.portalStatus = "idle";
      return Promise.resolve();
    }
    const option = $("questionnaire").selectedOptions[0];
    return loadForm({ canonical: option.dataset.canonical });
  }

  // the answers as LHC-Forms holds them (null while a field is invalid)
  function currentItems() {
    const response = LForms.Util.getFormFHIRData("QuestionnaireResponse", "R4", $("formContainer"));
    return response ? response.item || [] : null;
  }

  function exportResponse(status) {
    const response = LForms.Util.getFormFHIRData("QuestionnaireResponse", "R4", $("formContainer"));
    if (!response) {
      // LHC-Forms exports nothing while a field holds an invalid value
      const problems = LForms.Util.checkValidity($("formContainer")) || [];
      throw new Error(["Correct the form first.", ...problems].join("\n"));
    }
    const m = member();
    const q = loaded.questionnaire;
    response.id = session.id;
    // LHC-Forms names the Questionnaire as url|version; keep the one served
    response.questionnaire = `${q.url}|${q.version}`;
    response.status = status;
    response.subject = subject(m);
    response.author = author(m);
    response.extension = [
      ...(loaded.draft.extension || []).filter((e) => CONTEXT_EXTENSIONS.includes(e.url)),
      { url: PRIORITY_EXTENSION, valueCode: m.expedited ? "expedited" : "standard" },
    ];
    // the birth-date questions shown answer with the patient's birth date,
    // whatever the form was last drawn with
    loaded.birthDates.forEach((path) => {
      if (m.birthDate && answerAt(response.item, path)) {
        setAnswers(response.item, path, [{ valueDate: m.birthDate }]);
      }
    });
    return response;
  }

  // --- a lapsed sign-in ------------------------------------------------------------------

  function keepLocally() {
    if (!loaded || !session) return;
    let response;
    try {
      response = exportResponse("in-progress");
    } catch {
      return; // a field holds an invalid value: the last good answers stay kept
    }
    const m = member();
    if (m.birthDate) response.extension.push({ url: BIRTH_DATE_EXTENSION, valueDate: m.birthDate });
    sessionStorage.setItem(
      UNSENT,
      JSON.stringify({ response, context: loaded.context || null, draftSaved: session.draftSaved }),
    );
  }

  function forgetLocally() {
    sessionStorage.removeItem(UNSENT);
  }

  // the service answered 401: the answers are kept in the tab, and the way
  // back (sign in, then this page restores them) is shown by the buttons
  function sessionEnded() {
    keepLocally();
    $("sign-in-again").href = `/signin?next=${encodeURIComponent("/?restore=1")}`;
    $("session-ended").hidden = false;
    $("session-ended").scrollIntoView({ block: "nearest" });
    window.portalStatus = "signed-out";
  }

  async function restore() {
    const kept = JSON.parse(sessionStorage.getItem(UNSENT) || "null");
    if (!kept) {
      say("Nothing was kept in this tab to restore.");
      return;
    }
    fillIdentity(kept.response);
    identityValid(false);
    await loadForm({ restored: kept });
    history.replaceState(null, "", session.draftSaved ? `/?draft=${encodeURIComponent(session.id)}` : "/");
    say("Your answers are back: submit when ready.");
  }

  // --- submitting -----------------------------------------------------------------------

  function setBusy(on, label) {
    busy = on;
    $("submit").disabled = on || !loaded;
    $("save-draft").disabled = on || !loaded;
    $("submit").textContent = on && label ? label : loaded && loaded.context ? "Send reply" : "Submit for determination";
    $("submit").setAttribute("aria-busy", on ? "true" : "false");
  }

  // the questions a submission would pend for, asked of the service before
  // anything is sent (none when it cannot say: the submission then tells)
  async function unansweredOf(response) {
    const checked = await fetch("/submissions/check", {
      method: "POST",
      headers: POST_HEADERS,
      body: JSON.stringify(response),
    });
    return checked.ok ? (await checked.json()).unanswered : [];
  }

  // an incomplete form: listed and highlighted, and the office asked first
  function askFirst(left) {
    $("unanswered-list").replaceChildren(...left.map((q) => element("li", q.question)));
    highlightMissing(left.map((q) => q.linkId));
    $("unanswered").hidden = false;
    $("submit-anyway").focus();
    window.portalStatus = "confirm";
  }

  // confirmed: the office chose to submit with questions unanswered
  async function submit(confirmed) {
    if (busy || !loaded) return;
    setBusy(true, "Submitting…");
    try {
      if (!identityValid(true)) {
        showError("Name the patient and the prescriber before submitting.");
        window.portalStatus = "ready";
        return;
      }
      window.portalStatus = "submitting";
      $("error").hidden = true;
      // submitted as it stands: an incomplete form is pended, not refused
      const response = exportResponse("completed");
      if (!confirmed) {
        const left = await unansweredOf(response);
        if (left.length) {
          askFirst(left);
          return;
        }
      }
      $("unanswered").hidden = true;
      // the same answers sent again are the same response (same id, same
      // authored): the service returns the one determination it made
      const key = JSON.stringify({ ...response, authored: null });
      if (session.submitted && session.submitted.key === key) {
        response.authored = session.submitted.authored;
      } else {
        session.submitted = { key, authored: response.authored };
      }
      window.lastResponse = response;
      // a reply to a pended request: the same operation, with the request's
      // id as context, the note and the documents beside the response
      const sent = loaded.context ? await replyParameters(response) : response;
      const reply = await fetch("/QuestionnaireResponse/$evaluate", {
        method: "POST",
        headers: POST_HEADERS,
        body: JSON.stringify(sent),
      });
      if (reply.status === 401) {
        sessionEnded();
        return;
      }
      const body = await reply.json();
      if (!reply.ok) {
        showError(`The response was refused (${reply.status}):\n${issues(body)}`);
        window.portalStatus = "refused";
        return;
      }
      if (session.draftSaved) {
        // submitted: the draft it came from is done with
        await call(`/drafts/${encodeURIComponent(session.id)}`, {
          method: "DELETE",
          headers: { "X-CSRF-Token": CSRF },
        });
        session.draftSaved = false;
        $("draft-note").hidden = true;
      }
      forgetLocally(); // sent: nothing left to restore
      if (loaded.context) {
        // the reply joined the request: the form is no longer a reply to make
        $("reply-note").value = "";
        $("reply-documents").value = "";
      }
      const determination = await call(`/determinations/${body.id}`);
      window.lastDetermination = determination;
      history.replaceState(null, "", `/?result=${encodeURIComponent(body.id)}`);
      await showResult(determination);
      window.portalStatus = "scored";
      refreshLists();
    } finally {
      setBusy(false);
    }
  }

  async function saveDraft() {
    if (busy || !loaded) return;
    setBusy(true);
    window.draftStatus = "saving";
    try {
      $("error").hidden = true;
      const response = exportResponse("in-progress");
      const m = member();
      if (m.birthDate) response.extension.push({ url: BIRTH_DATE_EXTENSION, valueDate: m.birthDate });
      const saved = await call("/drafts", {
        method: "POST",
        headers: POST_HEADERS,
        body: JSON.stringify(response),
      });
      session.id = saved.id;
      session.draftSaved = true;
      history.replaceState(null, "", `/?draft=${encodeURIComponent(saved.id)}`);
      $("draft-note").textContent = `Draft saved ${saved.shown.updated}: ${saved.label}.`;
      $("draft-note").hidden = false;
      say("Draft saved.");
      window.draftStatus = "saved";
      refreshLists();
    } catch (e) {
      window.draftStatus = "error";
      if (e.status === 401) {
        sessionEnded();
        return;
      }
      throw e;
    } finally {
      setBusy(false);
    }
  }

  // --- the result ------------------------------------------------------------------------

  const HEADLINES = {
    approved: "Approved",
    denied: "Denied",
    investigational: "Not covered: investigational",
    pended: "Pended",
  };

  // where a request stands, in a sentence; ``inForm``: the form it was made
  // with is on the page (its missing questions highlighted)
  function plainResult(d, inForm) {
    const review = d.review || {};
    if (d.outcome === "approved") {
      let text = "Approved";
      if (d.authorization) text += ` through ${d.authorization.end}`;
      const q = d.quantity;
      if (q) {
        text += `: ${q.approved} ${q.unit} per ${q.periodDays} days`;
        if (q.modified) text += ` (less than the ${q.requested} requested: the policy's limit)`;
      }
      return text;
    }
    if (d.outcome === "denied") {
      return "Denied: the request does not meet the policy's criteria (the notice gives each reason)";
    }
    if (d.outcome === "investigational") {
      return "Not covered: the policy treats this use as investigational (see the notice)";
    }
    if (d.outcome === "pended") {
      if (review.state === "awaiting-review" || (d.pendReason === "review" && !review.requested)) {
        return "Pended: a pharmacist is reviewing this request";
      }
      if (review.requested) return `Pended: the pharmacist asks for ${review.requested}`;
      const missing = (d.missingQuestions || []).length;
      if (missing && inForm) return "Pended: answer the highlighted questions";
      if (missing) return `Pended: ${missing} question${missing > 1 ? "s" : ""} to answer`;
      return "Pended: information is missing (see the notice)";
    }
    return d.outcome;
  }

  function itemElement(linkId) {
    if (!loaded || !loaded.depth.has(linkId)) return null;
    const id = "item-" + linkId + "/1".repeat(loaded.depth.get(linkId));
    return document.getElementById(id);
  }

  function highlightMissing(linkIds) {
    document
      .querySelectorAll("#formContainer .missing-question")
      .forEach((node) => node.classList.remove("missing-question"));
    const list = $("missing-list");
    list.replaceChildren();
    linkIds.forEach((linkId) => {
      const node = itemElement(linkId);
      // the note beside the question is the stylesheet's (.missing-question)
      if (node) node.classList.add("missing-question");
      const text = loaded && loaded.text.get(linkId) ? loaded.text.get(linkId) : linkId;
      const li = element("li");
      if (node) {
        const go = element("a", text, { href: `#${node.id}` });
        go.addEventListener("click", (event) => {
          event.preventDefault();
          node.scrollIntoView({ block: "center" });
          const input = node.querySelector("input, textarea, select");
          if (input) input.focus({ preventScroll: true });
        });
        li.append(go);
      } else {
        li.textContent = text;
      }
      list.append(li);
    });
    $("missing").hidden = linkIds.length === 0;
  }

  async function showNotice(recordId) {
    const reply = await fetch(`/determinations/${encodeURIComponent(recordId)}/notice`);
    if (!reply.ok) throw new Error(`The notice could not be read (${reply.status}).`);
    const page = new DOMParser().parseFromString(await reply.text(), "text/html");
    const host = $("notice");
    const root = host.shadowRoot || host.attachShadow({ mode: "open" });
    // the notice's own styles, kept to the notice (its page's body rules
    // apply to the notice's box)
    const css = [...page.querySelectorAll("style")]
      .map((s) => s.textContent)
      .join("\n")
      .replace(/(^|[\s,}])(html|body)(?=\s*[{,])/g, "$1.notice-body");
    const style = element(
      "style",
      `:host { display: block; } ${css} .notice-footer { color: #555; font-size: .85rem; }`,
    );
    const body = element("div", null, { class: "notice-body" });
    body.append(...[...page.body.childNodes].map((n) => document.importNode(n, true)));
    // the notice's landmarks are not the page's: one <main> on the page
    body.querySelectorAll("main, header, footer").forEach((landmark) => {
      const box = element("div", null, { class: `notice-${landmark.localName}` });
      box.append(...landmark.childNodes);
      landmark.replaceWith(box);
    });
    root.replaceChildren(style, body);
  }

  async function showResult(d) {
    const inForm = Boolean(loaded) && loaded.questionnaire &&
      d.questionnaire === `${loaded.questionnaire.url}|${loaded.questionnaire.version}`;
    $("outcome").textContent = plainResult(d, inForm);
    $("outcome").className = `outcome ${d.outcome}`;
    $("outcome").dataset.outcome = d.outcome;
    $("result-heading").textContent = `Result: ${HEADLINES[d.outcome] || d.outcome}`;
    const m = member();
    // the short reference an office reads out on the phone, the record's id beside it
    $("result-reference-number").textContent = d.reference || "";
    $("result-record").textContent = d.id;
    $("result-reference").hidden = !d.reference;
    $("result-member").textContent = m.name
      ? `${m.name} (member ${m.memberId}) · prescriber ${m.prescriber} (NPI ${m.npi})`
      : "";
    // an approval of the same policy for this member still running: an
    // early renewal or a duplicate, said before anyone waits on this one
    const running = d.runningApprovals || [];
    $("result-running").textContent = running.map((r) => r.text).join(" ");
    $("result-running").hidden = running.length === 0;
    highlightMissing(inForm ? d.missingQuestions || [] : []);
    const link = $("complete-later");
    if (d.context && (d.review || {}).state !== "awaiting-review") {
      link.href = `/?context=${encodeURIComponent(d.context)}`;
      link.hidden = false;
    } else {
      link.hidden = true;
    }
    $("link-claim").href = `/ClaimResponse/${encodeURIComponent(d.id)}`;
    $("link-response").href = `/QuestionnaireResponse/${encodeURIComponent(d.id)}`;
    $("link-notice").href = `/determinations/${encodeURIComponent(d.id)}/notice`;
    await showNotice(d.id);
    $("result").hidden = false;
    document.body.classList.add("has-result");
    $("result").scrollIntoView({ block: "start" });
    $("result").focus({ preventScroll: true });
  }

  // --- drafts and history ------------------------------------------------------------------

  function renderDrafts(drafts) {
    const list = $("drafts-list");
    list.replaceChildren();
    drafts.forEach((draft) => {
      const li = element("li", null, { "data-draft": draft.id });
      li.append(element("a", draft.label, { href: draft.link, class: "open-draft" }));
      li.append(element("span", ` · saved ${draft.shown.updated} `, { class: "note" }));
      const remove = element("button", "Delete", { type: "button", class: "delete-draft" });
      remove.addEventListener("click", () => deleteDraft(draft.id).catch(failed));
      li.append(remove);
      list.append(li);
    });
    $("drafts-empty").hidden = drafts.length > 0;
  }

  // the history's search and page: the query /submissions is read with
  let historyQuery = "";
  let historyPages = { next: null, previous: null };

  function renderHistory(found) {
    const submissions = found.submissions;
    const list = $("history-list");
    list.replaceChildren();
    submissions.forEach((s) => {
      const li = element("li", null, { "data-submission": s.id, class: s.outcome });
      const who = [s.patient, s.memberId ? `member ${s.memberId}` : null].filter(Boolean);
      // a pend a later request answered: not to be completed again
      const status = s.supersededBy
        ? "Pended, then answered by a later request"
        : plainResult(s, false);
      li.append(element("strong", status, { class: "status" }));
      if (s.reference) li.append(element("span", ` · reference ${s.reference}`, { class: "reference" }));
      li.append(element("br"));
      li.append(
        element("span", `${who.join(", ") || "no patient named"} · ${s.title} · ${s.shown.received}`),
      );
      if (s.priority === "expedited") li.append(element("span", " · expedited", { class: "note" }));
      li.append(element("br"));
      li.append(element("a", "Result", { href: `/?result=${encodeURIComponent(s.id)}` }));
      li.append(" · ");
      li.append(element("a", "Notice", { href: `/determinations/${encodeURIComponent(s.id)}/notice`, target: "_blank", rel: "noopener" }));
      if (s.outcome === "pended" && s.pendReason === "missing-information" && !s.supersededBy) {
        li.append(" · ");
        li.append(element("a", (s.review || {}).requested ? "Reply" : "Complete", { href: `/?context=${encodeURIComponent(s.id)}` }));
      }
      list.append(li);
    });
    const filtered = Object.keys(found.filters || {}).length > 0;
    $("history-empty").textContent = filtered ? "No submitted request matches the search." : "Nothing submitted yet.";
    $("history-empty").hidden = submissions.length > 0;
    $("history-count").textContent = submissions.length
      ? `${found.first}–${found.last} of ${found.total}${filtered ? " matching the search" : ""}`
      : "";
    historyPages = { next: found.next, previous: found.previous };
    $("history-next").hidden = !found.next;
    $("history-previous").hidden = !found.previous;
  }

  async function searchHistory(query) {
    historyQuery = query;
    try {
      renderHistory(await call(`/submissions${query ? `?${query}` : ""}`));
      window.listsStatus = "ready";
    } catch (e) {
      $("history-count").textContent = `The search was refused: ${e.message}`;
      window.listsStatus = "error";
    }
  }

  async function refreshLists() {
    try {
      const query = historyQuery ? `?${historyQuery}` : "";
      const [drafts, submissions] = await Promise.all([call("/drafts"), call(`/submissions${query}`)]);
      renderDrafts(drafts.drafts);
      renderHistory(submissions);
      window.listsStatus = "ready";
    } catch (e) {
      showError(`The drafts and the history could not be read: ${e.message}`);
      window.listsStatus = "error";
    }
  }

  async function deleteDraft(id) {
    await call(`/drafts/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: { "X-CSRF-Token": CSRF },
    });
    if (session && session.id === id) {
      session.draftSaved = false;
      $("draft-note").hidden = true;
    }
    say("Draft deleted.");
    await refreshLists();
  }

  async function openDraft(id) {
    const draft = await call(`/drafts/${encodeURIComponent(id)}`);
    fillIdentity(draft.response);
    identityValid(false);
    await loadForm({ draft });
  }

  async function openContext(id) {
    // the stored request: who it was for and who prescribed (audited read)
    const stored = await call(`/QuestionnaireResponse/${encodeURIComponent(id)}`);
    fillIdentity(stored);
    await loadForm({ context: id });
    identityValid(false);
  }

  async function openResult(id) {
    const determination = await call(`/determinations/${encodeURIComponent(id)}`);
    const stored = await call(`/QuestionnaireResponse/${encodeURIComponent(id)}`);
    fillIdentity(stored);
    window.lastDetermination = determination;
    await showResult(determination);
    window.portalStatus = "shown";
  }

  // --- wiring -------------------------------------------------------------------------------

  function failed(e) {
    showError(e instanceof Error ? e.message : String(e));
    window.portalStatus = "error";
  }

  $("request").addEventListener("submit", (event) => {
    event.preventDefault();
    openChosen().catch(failed);
  });
  $("submit").addEventListener("click", () => submit().catch(failed));
  $("submit-anyway").addEventListener("click", () => {
    $("unanswered").hidden = true;
    submit(true).catch(failed);
  });
  $("answer-first").addEventListener("click", () => {
    $("unanswered").hidden = true;
    const first = document.querySelector("#formContainer .missing-question");
    if (first) {
      first.scrollIntoView({ block: "center" });
      const input = first.querySelector("input, textarea, select");
      if (input) input.focus({ preventScroll: true });
    }
    window.portalStatus = "ready";
  });
  // kept as typed (a moment after the last change), for a lapsed sign-in
  let keeping = null;
  const keepSoon = () => {
    clearTimeout(keeping);
    keeping = setTimeout(keepLocally, 500);
  };
  $("formContainer").addEventListener("change", keepSoon);
  $("formContainer").addEventListener("input", keepSoon);
  // signed out on purpose: nothing of the member's stays in the tab
  if ($("signout")) $("signout").addEventListener("submit", forgetLocally);
  $("save-draft").addEventListener("click", () => saveDraft().catch(failed));
  // the history searched on the server, a page at a time
  $("history-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    new FormData($("history-search")).forEach((value, key) => {
      if (String(value).trim()) query.set(key, String(value).trim());
    });
    window.listsStatus = "loading";
    searchHistory(query.toString());
  });
  $("history-search").addEventListener("reset", () => {
    window.listsStatus = "loading";
    searchHistory("");
  });
  ["next", "previous"].forEach((which) => {
    $(`history-${which}`).addEventListener("click", () => {
      const link = historyPages[which];
      if (!link) return;
      window.listsStatus = "loading";
      searchHistory(link.slice(link.indexOf("?") + 1));
    });
  });
  $("print").addEventListener("click", () => window.print());
  // another policy: the form on the page is not its form
  $("questionnaire").addEventListener("change", () => {
    if (!loaded) return;
    if (identityValid(false)) {
      openChosen().catch(failed);
    } else {
      clearForm("The policy changed: open its form.");
    }
  });
  // the birth date answers the form's birth-date question: shown again with it
  $("birth-date").addEventListener("change", () => {
    if (!loaded || busy || CHECKS["birth-date"](member())) return;
    const items = currentItems();
    if (items === null) return;
    window.portalStatus = "loading";
    render(items)
      .then(() => {
        window.portalStatus = "ready";
      })
      .catch(failed);
  });
  // another member: the payer's prefilled answers are another member's;
  // the form is asked for again, keeping the answers the office gave
  $("member-id").addEventListener("change", () => {
    if (!loaded || busy || CHECKS["member-id"](member())) return;
    const items = currentItems();
    if (items === null) return;
    const prefilled = new Set(
      flatten(loaded.draft.item)
        .filter(([, answers]) =>
          answers.some((a) => (a.extension || []).some((e) => e.url === INFORMATION_ORIGIN)),
        )
        .map(([path]) => path.join("\u0000")),
    );
    const given = flatten(items).filter(([path]) => !prefilled.has(path.join("\u0000")));
    const q = loaded.questionnaire;
    const keep = session;
    loadForm({ canonical: `${q.url}|${q.version}` })
      .then(() => {
        session = keep;
        if (keep.draftSaved) {
          history.replaceState(null, "", `/?draft=${encodeURIComponent(keep.id)}`);
        }
        const merged = structuredClone(loaded.draft.item || []);
        given.forEach(([path, answers]) => setAnswers(merged, path, answers));
        return render(merged);
      })
      .catch(failed);
  });

  refreshLists();
  const view = params.get("view");
  if (view === "history" || view === "drafts") {
    const target = $(view);
    target.setAttribute("tabindex", "-1");
    target.scrollIntoView({ block: "start" });
    target.focus({ preventScroll: true });
  }
  if (params.get("restore")) {
    restore().catch(failed);
  } else if (params.get("draft")) {
    openDraft(params.get("draft")).catch(failed);
  } else if (params.get("context")) {
    openContext(params.get("context")).catch(failed);
  } else if (params.get("result")) {
    openResult(params.get("result")).catch(failed);
  } else if (params.get("q")) {
    $("questionnaire").value = params.get("q");
    $("patient-name").focus();
  }
})();
