// The portal: render the chosen Questionnaire with LHC-Forms, export what the
// provider entered as a QuestionnaireResponse, and submit it for scoring.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const FHIR_JSON = "application/fhir+json";
  window.portalStatus = "idle";

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  async function loadForm() {
    window.portalStatus = "loading";
    $("error").hidden = true;
    $("result").hidden = true;
    $("submit").disabled = true;
    const id = $("questionnaire").value;
    const reply = await fetch(`/Questionnaire/${encodeURIComponent(id)}`, { headers: { Accept: FHIR_JSON } });
    if (!reply.ok) {
      showError(`Questionnaire ${id} could not be loaded (${reply.status})`);
      window.portalStatus = "error";
      return;
    }
    const questionnaire = await reply.json();
    $("formContainer").innerHTML = "";
    await LForms.Util.addFormToPage(questionnaire, "formContainer", { fhirVersion: "R4" });
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
    const option = $("questionnaire").selectedOptions[0];
    // LHC-Forms names the Questionnaire as url|version; keep the one we served
    response.questionnaire = option.dataset.canonical;
    const patient = $("patient").value.trim();
    if (patient) response.subject = { reference: patient };
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
      headers: { "Content-Type": FHIR_JSON, Accept: FHIR_JSON },
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
    $("result").hidden = false;
    window.portalStatus = "scored";
  }

  $("load").addEventListener("click", () => loadForm().catch((e) => { showError(String(e)); window.portalStatus = "error"; }));
  $("submit").addEventListener("click", () => submit().catch((e) => { showError(String(e)); window.portalStatus = "error"; }));
  const wanted = new URLSearchParams(location.search).get("q");
  if (wanted) {
    $("questionnaire").value = wanted;
    $("load").click();
  }
})();
