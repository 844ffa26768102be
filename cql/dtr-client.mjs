#!/usr/bin/env node
// The data steps of the HL7 Da Vinci DTR reference client
// (github.com/HL7-DaVinci/dtr), done with the npm libraries it uses —
// fhirclient, cql-execution, cql-exec-fhir — for the end-to-end test
// tests/browser/test_dtr_client_e2e.py. Each step names the reference
// client's function it reproduces; where this script departs from it, the
// comment says so and why. The rendering steps (LHC-Forms) run in the
// browser, in the test.
//
//   node cql/dtr-client.mjs < request.json
//
// stdin, one JSON object:
//   {
//     "ehr": "http://127.0.0.1:8001",        the EHR's FHIR base (the SMART launch's iss)
//     "patient": "p1",                       the launch context patient
//     "order": "MedicationRequest/mr1",      the order the app is launched for
//     "coverage": "Coverage/cov1",           the member's Coverage
//     "payer": "http://127.0.0.1:8002",      the payer's FHIR base
//     "token": "..."                         the payer's access token (SMART Backend Services)
//   }
//
// stdout: {"questionnaire", "libraries", "neededResources", "bundle",
// "prescriber", "results", "response"}: the package's Questionnaire as it came,
// the Libraries matched to its cqf-library, the resource types fetched, the
// Bundle the ELM ran on, the prescriber read from the EHR, each Library's
// results (JSON) and the prefilled QuestionnaireResponse the client hands to
// LHC-Forms.
//
// Errors: message on stderr, exit 1.

import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const smart = require("fhirclient");
const cql = require("cql-execution");
const cqlfhir = require("cql-exec-fhir");

const CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library";
const INITIAL_EXPRESSION =
  "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression";
const CQF_EXPRESSION = "http://hl7.org/fhir/StructureDefinition/cqf-expression";
// src/util/qrUtils.js
const DTR_INFORMATION_ORIGIN =
  "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin";

// fhirclient on Node: the SMART API of a request/response pair, whose client()
// takes a launch state (serverUrl, tokenResponse) as a completed launch leaves it
function fhirClient(serverUrl, tokenResponse) {
  return smart({ headers: {} }, {}).client({ serverUrl, tokenResponse });
}

// src/util/fetchArtifacts.js fetchArtifactsOperation: the Coverage and the order
// read from the EHR, $questionnaire-package asked of the payer
async function fetchArtifacts(ehr, payer, request) {
  const order = await ehr.request(request.order);
  const coverage = await ehr.request(request.coverage);
  const parameters = {
    resourceType: "Parameters",
    meta: {
      profile: ["http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-qpackage-input-parameters"],
    },
    parameter: [
      { name: "coverage", resource: coverage },
      { name: "order", resource: order },
    ],
  };
  // the reference client calls the payer with the EHR's client; here the
  // payer's own token goes with the call (the payer authorizes its callers)
  const result = await payer.request({
    url: "Questionnaire/$questionnaire-package",
    method: "POST",
    headers: { "Content-Type": "application/fhir+json" },
    body: JSON.stringify(parameters),
  });
  if (result?.resourceType !== "Parameters") {
    throw new Error(`$questionnaire-package answered a ${result?.resourceType}`);
  }
  // The reference client reads the DTR 2.0.1 name `PackageBundle`; DTR 2.2.0
  // (this server) names it `packagebundle`, a known client behaviour left to
  // the client (docs/conformance-notes.md): the 2.2.0 name is read here.
  const bundles = result.parameter.filter((p) => p.name === "packagebundle");
  if (bundles.length === 0) throw new Error("no packagebundle in the $questionnaire-package reply");
  // "For now, take the first bundle"
  const entries = bundles[0].resource?.entry ?? [];
  const questionnaire = entries.find((e) => e.resource?.resourceType === "Questionnaire")?.resource;
  if (!questionnaire) throw new Error("No Questionnaire found in the package bundle.");

  // searchBundle: the main Libraries are those the Questionnaire's cqf-library
  // names; every other Library is a dependency. The reference client compares
  // Library.url with the whole canonical, which never matches a versioned
  // canonical (`url|version`, as these forms say it): a Library is matched by
  // its url against the canonical's url, and the package must hold only one
  // Library of that url (else the unversioned match would be ambiguous).
  const mainReferences = (questionnaire.extension ?? [])
    .filter((e) => e.url === CQF_LIBRARY)
    .map((e) => e.valueCanonical.split("|")[0]);
  const main = [];
  const dependent = [];
  for (const { resource } of entries) {
    if (resource?.resourceType !== "Library") continue;
    const content = resource.content.filter((c) => c.contentType === "application/elm+json")[0];
    const elm = JSON.parse(Buffer.from(content.data, "base64").toString("utf8"));
    if (mainReferences.includes(resource.url)) main.push({ library: resource, elm });
    else dependent.push(elm);
  }
  for (const url of mainReferences) {
    const found = main.filter((m) => m.library.url === url).length;
    if (found !== 1) throw new Error(`the package holds ${found} Libraries of url ${url}`);
  }
  return { order, questionnaire, main, dependent };
}

// src/elmExecutor/executeElm.js retrieveNeededResources: the types of the
// Library's dataRequirement, less Organization and *ValueSet types
function retrieveNeededResources(library) {
  if (library.dataRequirement == null) return undefined;
  const needed = new Set(library.dataRequirement.map((d) => d.type));
  return [...needed].filter((type) => type !== "Organization" && !/ValueSet\b/.test(type));
}

// src/elmExecutor/buildPopulatedResourceBundle.js: the Patient read, then for
// each needed type (last first) a search in the patient's compartment
// (fhirclient's patient.request adds `patient=<id>`, the search parameter the
// EHR's CapabilityStatement names), every page followed
async function buildPopulatedResourceBundle(ehr, neededResources) {
  const entries = [await ehr.patient.read()];
  const pending = (neededResources ?? ["Patient"]).slice();
  while (pending.length > 0) {
    const type = pending.pop();
    if (type === "Patient") continue;
    let page = await ehr.patient.request(`${type}?`);
    for (;;) {
      entries.push(...(page.entry ?? []).map((e) => e.resource));
      const next = (page.link ?? []).find((l) => l.relation === "next" && l.url != null);
      if (!next) break;
      page = await ehr.request(next.url);
    }
  }
  return { resourceType: "Bundle", type: "collection", entry: entries.map((resource) => ({ resource })) };
}

// executeElm.js executeElmAgainstPatientSource: cql-execution's Executor on a
// cql-exec-fhir patient source (FHIRv400, as the client picks for R4); the
// first patient's results
async function executeElm(elm, dependent, bundle, parameters) {
  const includes = elm.library.includes?.def ?? [];
  const dependencies = includes.map((include) =>
    dependent.find(
      (d) => d.library.identifier.id === include.path && d.library.identifier.version === include.version,
    ),
  );
  const library = includes.length ? new cql.Library(elm, new cql.Repository(dependencies)) : new cql.Library(elm);
  const patientSource = cqlfhir.PatientSource.FHIRv400();
  patientSource.loadBundles([bundle]);
  const executor = new cql.Executor(library, new cql.CodeService({}), parameters);
  const results = await executor.exec(patientSource);
  const keys = Object.keys(results?.patientResults ?? {});
  if (keys.length === 0) throw new Error("No patient results found in CQL execution");
  return results.patientResults[keys[0]];
}

// src/components/QuestionnaireForm/QuestionnaireForm.jsx getLibraryPrepopulationResult:
// an expression "Lib".define is split on the dot (quotes stripped from the
// library's name); a lone name is looked up in the first Library's results
function getLibraryPrepopulationResult(item, cqlResults) {
  let prepopulationResult;
  for (const e of item.extension) {
    if (e.url !== CQF_EXPRESSION && e.url !== INITIAL_EXPRESSION) continue;
    const value = e.valueExpression;
    const valueExpression = value.expression;
    let libraryName;
    let statementName;
    if (value.language === "application/elm+json") {
      libraryName = "LibraryLinkId" + item.linkId;
      statementName = "LinkId." + item.linkId;
    } else if (valueExpression !== undefined) {
      const valueComponents = valueExpression.split(".");
      if (valueComponents.length > 1) {
        libraryName = valueComponents[0].substring(1, valueComponents[0].length - 1);
        statementName = valueComponents[1];
      } else {
        statementName = valueExpression;
        libraryName = Object.keys(cqlResults)[0];
      }
    }
    prepopulationResult = cqlResults[libraryName] != null ? cqlResults[libraryName][statementName] : null;
  }
  return prepopulationResult;
}

// QuestionnaireForm.jsx getDisplayCoding, for a Code result (no contained
// ValueSets, no answerOption here)
function getDisplayCoding(v) {
  let system = "";
  let displayText = v.display;
  if (v.system === "http://snomed.info/sct") system = "SNOMED";
  else if (v.system?.startsWith("http://hl7.org/fhir/sid/icd-10")) system = "ICD-10";
  else if (v.system === "http://www.nlm.nih.gov/research/umls/rxnorm") system = "RxNorm";
  if (system.length > 0) displayText = displayText + " - " + system + " - " + v.code;
  return { code: v.code, system: v.system, display: displayText };
}

// QuestionnaireForm.jsx prepopulate (a new response, not a saved one): each
// item's answer from its expression's result, marked information-origin
// `auto`; a group is kept when something under it is answered. As in the
// client, the answer is taken once per extension the item carries (the
// loop runs over item.extension); mergeFHIRDataIntoLForms keeps one answer
// of a question that does not repeat.
function prepopulate(items, responseItems, cqlResults) {
  for (const item of items) {
    const responseItem = { linkId: item.linkId };
    if (item.item) {
      responseItem.item = [];
      prepopulate(item.item, responseItem.item, cqlResults);
      if (responseItem.item.length === 0) responseItem.item = undefined;
    }
    if (item.extension) {
      responseItem.answer = [];
      for (let n = 0; n < item.extension.length; n += 1) {
        const result = getLibraryPrepopulationResult(item, cqlResults);
        if (result == null) continue;
        const extension = [{ url: DTR_INFORMATION_ORIGIN, extension: [{ url: "source", valueCode: "auto" }] }];
        switch (item.type) {
          case "boolean":
            responseItem.answer.push({ valueBoolean: result, extension });
            break;
          case "integer":
            responseItem.answer.push({ valueInteger: result, extension });
            break;
          case "decimal":
            responseItem.answer.push({ valueDecimal: result, extension });
            break;
          case "date": {
            // "LHC form could not correctly parse Date object": a string
            let dateValue;
            if (result instanceof Date) {
              dateValue = result.toISOString().split("T")[0];
            } else {
              const parsed = new Date(result);
              dateValue = Number.isNaN(parsed.getTime()) ? result.toString() : parsed.toISOString().split("T")[0];
            }
            responseItem.answer.push({ valueDate: dateValue, extension });
            break;
          }
          case "choice":
            responseItem.answer.push({ valueCoding: getDisplayCoding(result), extension });
            break;
          default:
            responseItem.answer.push({ valueString: result, extension });
        }
      }
      if (responseItem.answer.length === 0) responseItem.answer = undefined;
    }
    if (!responseItem.answer && item.initial) responseItem.answer = item.initial;
    if (responseItem.answer || responseItem.item) responseItems.push(responseItem);
  }
}

// QuestionnaireForm.jsx mergeResponseForSameLinkId: top-level items of one
// linkId made one
function mergeResponseForSameLinkId(response) {
  const merged = { resourceType: response.resourceType, status: response.status, item: [] };
  const linkIds = new Set(response.item.map((i) => i.linkId));
  for (const linkId of linkIds) {
    let linkIdItem = { linkId, item: [] };
    for (const found of response.item.filter((i) => i.linkId === linkId)) {
      if (found.item) linkIdItem.item.push(...found.item);
      else {
        linkIdItem = found;
        linkIdItem.item = null;
      }
    }
    merged.item.push(linkIdItem);
  }
  return merged;
}

// CQL values as JSON, for the report (Date -> "YYYY-MM-DD", Code -> a Coding)
function plain(value) {
  if (value == null || typeof value !== "object") return value ?? null;
  if (Array.isArray(value)) return value.map(plain);
  if (value.isDate === true || value.isDateTime === true) return value.toString();
  if (value.isCode === true) return { system: value.system, code: value.code, display: value.display ?? null };
  if ("_json" in value) return value._json;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
}

async function main() {
  const request = JSON.parse(fs.readFileSync(0, "utf8"));
  const ehr = fhirClient(request.ehr, { patient: request.patient });
  const payer = fhirClient(request.payer, { access_token: request.token, token_type: "Bearer" });
  const artifacts = await fetchArtifacts(ehr, payer, request);

  // src/App.jsx: the order as the parameter `medication_request`. The Library
  // also declares `Prescriber` (in, a PractitionerRole: the DTR launch context
  // `user`), which the reference client does not pass (its prescriber
  // question would stay unanswered): here it is the order's requester, read
  // from the EHR as the client reads a requester (buildPopulatedResourceBundle
  // "Practitioner": smart.request(request.requester.reference)).
  const wrapper = cqlfhir.FHIRWrapper.FHIRv400();
  const prescriber = artifacts.order.requester?.reference
    ? await ehr.request(artifacts.order.requester.reference)
    : null;
  const parameters = { medication_request: wrapper.wrap(artifacts.order) };
  if (prescriber) parameters.Prescriber = wrapper.wrap(prescriber, "PractitionerRole");

  const results = {};
  const plainResults = {};
  const neededResources = [];
  let bundle = null;
  for (const { library, elm } of artifacts.main) {
    const needed = retrieveNeededResources(library);
    neededResources.push(...(needed ?? ["Patient"]));
    const libraryBundle = await buildPopulatedResourceBundle(ehr, needed);
    bundle ??= libraryBundle;
    const elmResults = await executeElm(elm, artifacts.dependent, libraryBundle, parameters);
    results[elm.library.identifier.id] = elmResults;
    plainResults[elm.library.identifier.id] = plain(elmResults);
  }

  const response = { resourceType: "QuestionnaireResponse", status: "draft", item: [] };
  prepopulate(artifacts.questionnaire.item ?? [], response.item, results);
  process.stdout.write(
    `${JSON.stringify({
      questionnaire: artifacts.questionnaire,
      libraries: artifacts.main.map(({ library }) => ({ url: library.url, version: library.version, name: library.name })),
      neededResources,
      bundle,
      prescriber,
      results: plainResults,
      response: mergeResponseForSameLinkId(response),
    })}\n`,
  );
}

// cql-exec-fhir and the engine log with console.log; stdout is the result
console.log = (...args) => console.error(...args);

main().catch((err) => {
  process.stderr.write(`dtr-client: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
