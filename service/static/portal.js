// The portal, a DTR client of this service: it asks $questionnaire-package for
// the chosen Questionnaire (or for the context of a pended request), renders
// it with LHC-Forms with the payer's draft response merged in, lets LHC-Forms
// expand each answer list with this service's ValueSet/$expand, and submits
// what the provider entered to $evaluate.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const FHIR_JSON = "application/fhir+json";
  const DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/";
  // the draft's links to the coverage, the order and its intended use, which
  // the completed response carries on
  const CONTEXT_EXTENSIONS = [DTR + "qr-coverage", DTR + "qr-context", DTR + "intendedUse"];
  const TERMINOLOGY_SERVER =
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-preferredTerminologyServer";
  const params = new URLSearchParams(location.search);
  // the session's CSRF token: every request that changes something carries it
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const POST_HEADERS = { "Content-Type": FHIR_JSON, Accept: FHIR_JSON, "X-CSRF-Token": CSRF };
  let loaded = null; // {questionnaire, draft} of the package on the page
  window.portalStatus = "idle";

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  function coverage() {
    // the member's coverage with this plan, as a DTR client would send it
    const patient = $("patient").value.trim() || "Patient/example";
    return {
      resourceType: "Coverage",
      id: "portal-coverage",
      status: "active",
      beneficiary: { reference: patient },
      payor: [{ display: "this plan" }],
    };
  }

  async function fetchPackage(contextId) {
    const parameter = [{ name: "coverage", resource: coverage() }];
    if (contextId) {
      parameter.push({ name: "context", valueString: contextId });
    } else {
      const option = $("questionnaire").selectedOptions[0];
      parameter.push({ name: "questionnaire", valueCanonical: option.dataset.canonical });
    }
    const reply = await fetch("/Questionnaire/$questionnaire-package", {
      method: "POST",
      headers: POST_HEADERS,
      body: JSON.stringify({ resourceType: "Parameters", parameter }),
    });
    const body = await reply.json();
    if (!reply.ok) {
      throw new Error((body.issue || []).map((i) => i.diagnostics).join("\n"));
    }
    const bundle = (body.parameter || []).find((p) => p.name === "packagebundle");
    if (!bundle) {
      const outcome = (body.parameter || []).find((p) => p.name === "outcome");
      const issues = outcome ? outcome.resource.issue.map((i) => i.diagnostics) : [];
      throw new Error(["No form was returned.", ...issues].join("\n"));
    }
    const [questionnaire, draft] = bundle.resource.entry.map((e) => e.resource);
    return { questionnaire, draft };
  }

  async function loadForm(contextId) {
    window.portalStatus = "loading";
    $("error").hidden = true;
    $("result").hidden = true;
    $("submit").disabled = true;
    loaded = await fetchPackage(contextId);
    const questionnaire = structuredClone(loaded.questionnaire);
    const option = [...$("questionnaire").options].find((o) => o.value === questionnaire.id);
    if (option) $("questionnaire").value = questionnaire.id;
    // answer lists are expanded by this service (ValueSet/$expand): said on
    // each item that has one (LHC-Forms keeps an item's setting through the
    // merge of a draft response, not the form's)
    // LHC-Forms runs FHIRPath, not CQL: the EHR prefill (CQL initialExpression
    // over the launch context) is a DTR client's; this portal shows what the
    // payer's draft response holds
    const isCql = (e) =>
      e.url.endsWith("initialExpression") && e.valueExpression.language === "text/cql";
    questionnaire.extension = (questionnaire.extension || []).filter(
      (e) => !e.url.endsWith("launchContext") && !e.url.endsWith("cqf-library"),
    );
    const expandHere = (items) =>
      (items || []).forEach((item) => {
        if (item.extension) item.extension = item.extension.filter((e) => !isCql(e));
        if (item.answerValueSet) {
          item.extension = [
            ...(item.extension || []),
            { url: TERMINOLOGY_SERVER, valueUrl: location.origin },
          ];
        }
        expandHere(item.item);
      });
    expandHere(questionnaire.item);
    let form = LForms.Util.convertFHIRQuestionnaireToLForms(questionnaire, "R4");
    if (loaded.draft.item) {
      // what the payer filled in: its own records, or the earlier answers
      form = LForms.Util.mergeFHIRDataIntoLForms("QuestionnaireResponse", loaded.draft, form, "R4");
    }
    $("formContainer").innerHTML = "";
    await LForms.Util.addFormToPage(form, "formContainer", { fhirVersion: "R4" });
    $("reopened").hidden = !contextId;
    $("submit").disabled = false;
    window.portalStatus = "ready";
  }

  function exportResponse() {
    const response = LForms.Util.getFormFHIRData("QuestionnaireResponse", "R4", $("formContainer"));
    if (!response) {
      // LHC-Forms exports nothing while a field holds an invalid value
      const problems = LForms.Util.checkValidity($("formContainer")) || [];
      throw new Error(["Correct the form first.", ...problems].join("\n"));
    }
    const q = loaded.questionnaire;
    // LHC-Forms names the Questionnaire as url|version; keep the one served
    response.questionnaire = `${q.url}|${q.version}`;
    response.extension = (loaded.draft.extension || []).filter((e) =>
      CONTEXT_EXTENSIONS.includes(e.url),
    );
    if (loaded.draft.subject) response.subject = loaded.draft.subject;
    // submitted as it stands: an incomplete form is pended, not refused
    response.status = "completed";
    return response;
  }

  async function submit() {
    window.portalStatus = "submitting";
    $("error").hidden = true;
    const response = exportResponse();
    window.lastResponse = response;
    const reply = await fetch("/QuestionnaireResponse/$evaluate", {
      method: "POST",
      headers: POST_HEADERS,
      body: JSON.stringify(response),
    });
    const body = await reply.json();
    if (!reply.ok) {
      const issues = (body.issue || []).map((i) => i.diagnostics).join("\n");
      showError(`The response was refused (${reply.status}):\n${issues}`);
      window.portalStatus = "refused";
      return;
    }
    const determination = await (await fetch(`/determinations/${body.id}`)).json();
    window.lastDetermination = determination;
    $("outcome").textContent = determination.outcome;
    $("outcome").className = determination.outcome;
    $("determination").textContent = JSON.stringify(determination, null, 2);
    $("notice").src = `/determinations/${body.id}/notice`;
    const link = $("complete-later");
    if (determination.context) {
      const patient = encodeURIComponent($("patient").value.trim());
      link.href = `/?context=${encodeURIComponent(determination.context)}&patient=${patient}`;
      link.hidden = false;
    } else {
      link.hidden = true;
    }
    $("result").hidden = false;
    window.portalStatus = "scored";
  }

  function failed(e) {
    showError(e instanceof Error ? e.message : String(e));
    window.portalStatus = "error";
  }

  $("load").addEventListener("click", () => loadForm(null).catch(failed));
  $("submit").addEventListener("click", () => submit().catch(failed));
  if (params.get("patient")) $("patient").value = params.get("patient");
  if (params.get("context")) {
    loadForm(params.get("context")).catch(failed);
  } else if (params.get("q")) {
    $("questionnaire").value = params.get("q");
    loadForm(null).catch(failed);
  }
})();
