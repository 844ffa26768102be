#!/usr/bin/env node
// Execute ELM (from translate.mjs) against one patient's FHIR R4 Bundle with
// cql-execution + cql-exec-fhir, and print the results as plain JSON.
//
//   node cql/execute.mjs < request.json
//
// stdin, one JSON object:
//   {
//     "elm": {"LibName": <elm json>, ...},   main library and every library it includes
//     "main": "LibName",                     library whose expressions are evaluated
//     "bundle": <FHIR R4 Bundle>,            the patient's resources; exactly one Patient
//     "runs": [{"bundle", "parameters"}, ...] instead of "bundle" and "parameters": several
//                                            records, each evaluated alone with its own
//                                            parameters (one process for many)
//     "parameters": {"Name": value, ...},    optional; see below
//     "expressions": ["Expr A", ...],        optional; default: every expression of the
//                                            main library (not functions, not the
//                                            implicit `Patient` context definition)
//     "executionDateTime": "2025-01-31T12:00:00Z",  optional; Now()/Today(); default: now
//     "valueSets": {"<url>": {"<version>": [{"system": s, "code": c}, ...]}}  optional,
//                                            for `valueset` declarations (cql-execution's
//                                            CodeService format; version "" if unversioned)
//   }
//
// stdout: {"Expr A": value, ...} in the requested order (with "runs": a list of them,
//   one per run, in order). Values are plain JSON:
//   null; booleans; numbers; strings; Date -> "YYYY-MM-DD" (or coarser, e.g.
//   "2020-03", at lower precision); DateTime -> ISO 8601 with offset; Time ->
//   "hh:mm:ss.fff"; Code -> {"system", "code", "display"} (+ "version" when set);
//   Concept -> {"codes": [Code...], "display"}; Quantity -> {"value", "unit"};
//   Ratio -> {"numerator", "denominator"}; Interval -> {"low", "high",
//   "lowClosed", "highClosed"}; List -> array; Tuple -> object; FHIR resources
//   and elements -> their FHIR JSON (a FHIR primitive such as Patient.gender
//   -> {"value": ...}: select `.value` in CQL for the plain value); an uncertain Integer (e.g. years between
//   partial dates) -> the number when certain, else {"low", "high"}.
//
// Parameters are converted from JSON by the type the main library declares:
//   FHIR types (e.g. `parameter "Role" FHIR.PractitionerRole`) take the
//   resource JSON; System.Date/DateTime take ISO strings; Code takes
//   {"system","code","display"}; Concept {"codes": [...], "display"}; Quantity
//   {"value","unit"}; Interval {"low","high","lowClosed","highClosed"};
//   List<T> an array of T; Boolean/Integer/Decimal/String as is.
//
// Resources in the Bundle are matched by resourceType only (cql-exec-fhir
// does not check patient compartments), so a retrieve of a non-patient type
// such as [PractitionerRole] returns the PractitionerRoles in the Bundle.
//
// Errors: message on stderr, exit 1.

import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const cql = require("cql-execution");
const cqlfhir = require("cql-exec-fhir");

const SYSTEM = "{urn:hl7-org:elm-types:r1}";
const FHIR = "{http://hl7.org/fhir}";

class InputError extends Error {}

function typeName(spec) {
  if (spec == null) return null;
  if (typeof spec === "string") return spec;
  if (spec.type === "NamedTypeSpecifier") return spec.name;
  return null;
}

function fromJson(value, spec, wrapper, where) {
  if (value == null) return null;
  if (spec?.type === "ListTypeSpecifier") {
    if (!Array.isArray(value)) throw new InputError(`${where}: expected a list`);
    return value.map((item, i) => fromJson(item, spec.elementType, wrapper, `${where}[${i}]`));
  }
  if (spec?.type === "IntervalTypeSpecifier") {
    return new cql.Interval(
      fromJson(value.low, spec.pointType, wrapper, `${where}.low`),
      fromJson(value.high, spec.pointType, wrapper, `${where}.high`),
      value.lowClosed ?? true,
      value.highClosed ?? true,
    );
  }
  if (spec?.type === "TupleTypeSpecifier") {
    const out = {};
    for (const element of spec.element ?? []) {
      out[element.name] = fromJson(value[element.name], element.elementType ?? element.type, wrapper, `${where}.${element.name}`);
    }
    return out;
  }
  const name = typeName(spec);
  if (name == null) return value;
  if (name.startsWith(FHIR)) {
    if (typeof value !== "object") throw new InputError(`${where}: expected FHIR JSON for ${name}`);
    try {
      return wrapper.wrap(value, name.slice(FHIR.length));
    } catch (err) {
      throw new InputError(`${where}: ${err?.message ?? err}`);
    }
  }
  switch (name) {
    case `${SYSTEM}Date`: {
      const date = cql.Date.parse(String(value));
      if (date == null) throw new InputError(`${where}: not a Date: ${value}`);
      return date;
    }
    case `${SYSTEM}DateTime`: {
      const dateTime = cql.DateTime.parse(String(value).replace(/Z$/, "+00:00"));
      if (dateTime == null) throw new InputError(`${where}: not a DateTime: ${value}`);
      return dateTime;
    }
    case `${SYSTEM}Code`:
      return new cql.Code(value.code, value.system, value.version, value.display);
    case `${SYSTEM}Concept`:
      return new cql.Concept(
        (value.codes ?? []).map((c) => new cql.Code(c.code, c.system, c.version, c.display)),
        value.display,
      );
    case `${SYSTEM}Quantity`:
      return new cql.Quantity(value.value, value.unit ?? "1");
    default:
      return value;
  }
}

function toJson(value) {
  if (value == null) return null;
  if (typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (Array.isArray(value)) return value.map(toJson);
  if (value instanceof cql.Date || value.isDate === true) return value.toString();
  if (value instanceof cql.DateTime || value.isDateTime === true) {
    return value.isTime() ? value.toStringTime?.() ?? value.toString() : value.toString();
  }
  if (value.isCode === true) {
    const code = { system: value.system ?? null, code: value.code ?? null, display: value.display ?? null };
    if (value.version != null) code.version = value.version;
    return code;
  }
  if (value.isConcept === true) {
    return { codes: (value.codes ?? []).map(toJson), display: value.display ?? null };
  }
  if (value.isQuantity === true) return { value: toJson(value.value), unit: value.unit ?? null };
  if (value.isRatio === true) {
    return { numerator: toJson(value.numerator), denominator: toJson(value.denominator) };
  }
  if (value.isUncertainty === true) {
    // An imprecise result (e.g. a duration between partial dates): the point if known.
    return value.isPoint() ? toJson(value.low) : { low: toJson(value.low), high: toJson(value.high) };
  }
  if (value.isInterval === true) {
    return {
      low: toJson(value.low),
      high: toJson(value.high),
      lowClosed: value.lowClosed,
      highClosed: value.highClosed,
    };
  }
  if (typeof value.getTypeInfo === "function" && "_json" in value) {
    // A cql-exec-fhir FHIRObject: a resource or element as it was in the Bundle.
    return value._json ?? null;
  }
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const out = {};
    for (const [key, item] of Object.entries(value)) out[key] = toJson(item);
    return out;
  }
  if (typeof value.toString === "function" && value.toString !== Object.prototype.toString) {
    return value.toString();
  }
  throw new Error(`cannot convert a ${value.constructor?.name ?? typeof value} result to JSON`);
}

// Every library reachable from main must be in "elm" (cql-execution would
// otherwise fail later with a less helpful message).
function checkIncludes(elm, mainName, repository) {
  const pending = [[mainName, elm[mainName]]];
  const done = new Set();
  while (pending.length > 0) {
    const [name, json] = pending.pop();
    if (done.has(name)) continue;
    done.add(name);
    for (const include of json?.library?.includes?.def ?? []) {
      const found = repository.resolve(include.path, include.version);
      if (found == null) {
        const version = include.version ? ` version '${include.version}'` : "";
        throw new InputError(`library ${name} includes ${include.path}${version}, which is not in "elm"`);
      }
      pending.push([found.name, found.source]);
    }
  }
}

// Messages from CQL's Message() operator go to stderr: stdout is the result.
const messageListener = {
  onMessage(_source, code, severity, message) {
    process.stderr.write(`execute: CQL message [${severity}] ${code ?? ""}: ${message ?? ""}\n`);
  },
};

async function main() {
  let request;
  try {
    request = JSON.parse(fs.readFileSync(0, "utf8"));
  } catch (err) {
    throw new InputError(`stdin is not JSON: ${err.message}`);
  }
  const { elm, main: mainName } = request ?? {};
  if (elm == null || typeof elm !== "object") throw new InputError('"elm" must be {"LibName": elm, ...}');
  if (typeof mainName !== "string" || elm[mainName] == null) {
    throw new InputError(`"main" must name a library in "elm" (got ${JSON.stringify(mainName)})`);
  }
  const several = request.runs != null;
  if (several && (!Array.isArray(request.runs) || request.bundle != null || request.parameters != null)) {
    throw new InputError('"runs" must be a list of {"bundle", "parameters"}, given without "bundle" and "parameters"');
  }
  const runs = several ? request.runs : [{ bundle: request.bundle, parameters: request.parameters }];
  runs.forEach((run, i) => {
    const where = several ? `"runs"[${i}].bundle` : '"bundle"';
    const bundle = run?.bundle;
    if (bundle?.resourceType !== "Bundle" || !Array.isArray(bundle.entry)) {
      throw new InputError(`${where} must be a FHIR Bundle with an "entry" list`);
    }
    const patients = bundle.entry.filter((e) => e?.resource?.resourceType === "Patient");
    if (patients.length !== 1) {
      throw new InputError(`${where} must hold exactly one Patient (found ${patients.length})`);
    }
  });

  const repository = new cql.Repository(elm);
  checkIncludes(elm, mainName, repository);
  const library = new cql.Library(elm[mainName], repository);

  const wrapper = cqlfhir.FHIRWrapper.FHIRv401();
  const parameterSets = runs.map((run) => {
    const parameters = {};
    for (const [name, value] of Object.entries(run.parameters ?? {})) {
      const def = library.parameters[name];
      if (def == null) throw new InputError(`library ${mainName} has no parameter "${name}"`);
      parameters[name] = fromJson(value, def.parameterTypeSpecifier ?? def.parameterType, wrapper, `parameter "${name}"`);
    }
    return parameters;
  });

  const definitions = (elm[mainName].library.statements?.def ?? []).filter((d) => d.type !== "FunctionDef");
  let names;
  if (request.expressions == null) {
    names = definitions.filter((d) => d.name !== d.context).map((d) => d.name);
  } else {
    if (!Array.isArray(request.expressions)) throw new InputError('"expressions" must be a list of names');
    names = request.expressions;
    for (const name of names) {
      if (library.expressions[name] == null) throw new InputError(`library ${mainName} has no expression "${name}"`);
    }
  }
  for (const name of names) {
    const context = library.expressions[name].context;
    if (context !== "Patient") {
      throw new InputError(`expression "${name}" is in ${context} context; only Patient context is evaluated`);
    }
  }

  let executionDateTime; // undefined: cql-execution uses the current local time
  if (request.executionDateTime != null) {
    executionDateTime = cql.DateTime.parse(String(request.executionDateTime).replace(/Z$/, "+00:00"));
    if (executionDateTime == null) throw new InputError(`bad executionDateTime: ${request.executionDateTime}`);
  }

  const codeService = new cql.CodeService(request.valueSets ?? {});
  const outputs = [];
  for (const [i, run] of runs.entries()) {
    const patientSource = cqlfhir.PatientSource.FHIRv401();
    patientSource.loadBundles([run.bundle]);
    // One PatientContext for all requested expressions (what Executor.exec does
    // per patient), so shared sub-expressions are evaluated once; Executor
    // itself can only run one expression or all of them.
    const patient = patientSource.currentPatient();
    const context = new cql.PatientContext(library, patient, codeService, parameterSets[i], executionDateTime, messageListener);
    const results = {};
    for (const name of names) {
      let value;
      try {
        value = await library.expressions[name].execute(context);
      } catch (err) {
        throw new Error(`expression "${name}": ${err?.message ?? err}`, { cause: err });
      }
      results[name] = toJson(value);
    }
    outputs.push(results);
  }
  const results = several ? outputs : outputs[0];
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

// cql-exec-fhir reports unknown elements with console.error, which is fine
// (stderr); nothing else may write to stdout.
console.log = (...args) => console.error(...args);

main().catch((err) => {
  process.stderr.write(`execute: ${err?.message ?? err}\n`);
  process.exitCode = 1;
});
