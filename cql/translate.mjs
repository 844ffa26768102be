#!/usr/bin/env node
// Translate CQL to ELM JSON with the official CQL-to-ELM translator
// (@cqframework/cql, the Kotlin/JS build of cqframework's translator), offline.
//
// Two ways to call it:
//
//   node cql/translate.mjs [--out DIR] Name.cql [Other.cql ...]
//       Translates each file and writes Name.json next to it (or into DIR).
//       A file must be named after the library it declares (`library Name`),
//       which is also how `include Name` statements between the given files
//       are resolved.
//
//   node cql/translate.mjs < request.json
//       (no file arguments) reads {"libraries": {"Name": "<cql text>", ...}}
//       on stdin and prints {"Name": <elm json>, ...} on stdout (keys sorted).
//       `include` statements resolve between the given libraries.
//
// Model: FHIR 4.0.1 (the model info that ships inside cql-exec-fhir, i.e. the
// same one cql-execution runs with), units validated with @lhncbc/ucum-lhc.
// FHIRHelpers is not available: write explicit `.value` paths.
//
// On any error-severity message: prints `file:line:col message` for each
// error to stderr (file is the .cql path, or the library name for stdin) and
// exits 1 without writing anything. Warnings are printed as
// `file:line:col warning: message` and do not fail the run.
//
// The ELM is deterministic: same input, same bytes (the translator embeds no
// timestamps or random ids; every library is translated with a fresh
// LibraryManager so results do not depend on argument order).

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

// The Kotlin/JS runtime prints to process.stdout on its own (kotlin-logging
// announces itself with a println on first use). stdout is reserved for the
// ELM, so everything else written there goes to stderr, minus that banner.
const writeStdout = process.stdout.write.bind(process.stdout);
let droppedBanner = false;
process.stdout.write = (chunk, ...rest) => {
  const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  if (text.startsWith("kotlin-logging: initializing")) {
    droppedBanner = true;
    return true;
  }
  if (droppedBanner && text === "\n") {
    droppedBanner = false;
    return true;
  }
  droppedBanner = false;
  return process.stderr.write(chunk, ...rest);
};

const {
  CqlCompilerOptions,
  CqlTranslator,
  LibraryManager,
  ModelManager,
  createLibrarySourceProvider,
  createModelInfoProvider,
  createUcumService,
  stringAsSource,
} = await import("@cqframework/cql/cql-to-elm");
const { SystemModelInfoProvider } = await import("@cqframework/cql/cql");

const require = createRequire(import.meta.url);
const FHIR_VERSION = "4.0.1";

function fail(message) {
  process.stderr.write(`translate: ${message}\n`);
  process.exit(1);
}

// Translator options, chosen for DTR / cql-execution:
// - EnableAnnotations OFF: annotations embed the CQL source narrative in the
//   ELM (about 4x the size here). The DTR Library already carries the CQL text,
//   cql-execution never reads annotations, and a DTR client downloads the ELM,
//   so smaller is better. Translator errors/warnings are still recorded as
//   CqlToElmError annotations, which is how this script reports positions.
// - EnableLocators ON: every ELM node keeps its `line:col-line:col` source
//   range, so runtime problems can be traced back to the CQL.
// - DisableListDemotion, DisableListPromotion: the CQF/IG-publisher defaults;
//   implicit list<->singleton conversions hide mistakes in authored logic.
// - Signature level Overloads (translator default): cql-execution picks
//   overloads from runtime argument types and ignores signatures, so more
//   (All) would only add bytes; Overloads keeps overloaded calls unambiguous
//   for other engines.
// - EnableDetailedErrors ON: reports the cause of an error instead of only
//   "Internal translator error." at the enclosing expression.
function compilerOptions() {
  const O = CqlCompilerOptions.Options;
  const options = new CqlCompilerOptions();
  options.setOptions([O.EnableDetailedErrors, O.EnableLocators, O.DisableListDemotion, O.DisableListPromotion]);
  return options;
}

function modelManager() {
  const fhirXml = fs.readFileSync(
    require.resolve(`cql-exec-fhir/lib/modelInfos/fhir-modelinfo-${FHIR_VERSION}.xml`),
    "utf8",
  );
  // Default model info loading off: System and FHIR come only from here.
  const models = new ModelManager(undefined, false);
  models.modelInfoLoader.registerModelInfoProvider(new SystemModelInfoProvider());
  models.modelInfoLoader.registerModelInfoProvider(
    createModelInfoProvider((id, _system, version) =>
      id === "FHIR" && (version == null || version === FHIR_VERSION) ? stringAsSource(fhirXml) : null,
    ),
  );
  return models;
}

let ucumUtils = null;
function ucum() {
  // Loaded on first use: the UCUM tables take a moment and most CQL has no quantities.
  if (ucumUtils === null) {
    ucumUtils = require("@lhncbc/ucum-lhc").UcumLhcUtils.getInstance();
  }
  return ucumUtils;
}

const ucumService = createUcumService(
  (value, from, to) => {
    const result = ucum().convertUnitTo(from, Number(value), to);
    if (result.status !== "succeeded") {
      throw new Error(`cannot convert ${value} '${from}' to '${to}': ${(result.msg ?? []).join("; ")}`);
    }
    return String(result.toVal);
  },
  (unit) => {
    const result = ucum().validateUnitString(unit);
    return result.status === "valid" ? null : (result.msg ?? []).join("; ") || `invalid unit '${unit}'`;
  },
  // Quantity arithmetic happens at run time (cql-execution); translation does not multiply units.
  () => {
    throw new Error("UCUM multiply is not supported by translate.mjs");
  },
  () => {
    throw new Error("UCUM divide is not supported by translate.mjs");
  },
);

// libraries: Map name -> {source: cql text, label: what to call it in messages}
// Returns {elm: Map name -> elm object, errors, warnings}; a message is {file, line, col, text}.
function translateAll(libraries) {
  const models = modelManager();
  const options = compilerOptions();
  // A message names the library it is about; one that is not among the given
  // libraries (e.g. a file not named after its library) is the one being translated.
  const labelOf = (libraryId, current) => libraries.get(libraryId)?.label ?? current;
  const errors = [];
  const warnings = [];
  const seen = new Set();
  const elm = new Map();
  for (const name of [...libraries.keys()].sort()) {
    const { source, label } = libraries.get(name);
    const manager = new LibraryManager(models, options, undefined, ucumService);
    manager.librarySourceLoader.registerProvider(
      createLibrarySourceProvider((id) => {
        const lib = libraries.get(id);
        return lib ? stringAsSource(lib.source) : null;
      }),
    );
    let translator;
    let json;
    try {
      translator = CqlTranslator.fromText(source, manager);
      json = JSON.parse(translator.toJson());
    } catch (err) {
      errors.push({ file: label, line: 1, col: 1, text: `translator failed: ${err?.message ?? err}` });
      continue;
    }
    // Positions come from the CqlToElmError annotations (the exception objects'
    // locators are not part of the package's JS API).
    let reported = 0;
    for (const note of json.library?.annotation ?? []) {
      if (note.type !== "CqlToElmError") continue;
      const message = {
        file: labelOf(note.libraryId, label),
        line: note.startLine ?? 0,
        col: note.startChar ?? 0,
        text: note.message,
      };
      const key = `${note.errorSeverity}|${message.file}:${message.line}:${message.col}|${message.text}`;
      if (note.errorSeverity === "error") reported += 1;
      if (seen.has(key)) continue;
      seen.add(key);
      if (note.errorSeverity === "error") errors.push(message);
      else if (note.errorSeverity === "warning") warnings.push({ ...message, text: `warning: ${message.text}` });
    }
    const errorCount = translator.errors.asJsReadonlyArrayView().length;
    if (errorCount > 0 && reported === 0) {
      for (const err of translator.errors.asJsReadonlyArrayView()) {
        errors.push({ file: label, line: 0, col: 0, text: err.message });
      }
    }
    if (errorCount === 0) {
      const declared = json.library?.identifier?.id;
      if (declared !== name) {
        errors.push({ file: label, line: 1, col: 1, text: `declares library ${declared ?? "(none)"} but is named ${name}` });
        continue;
      }
      elm.set(name, json);
    }
  }
  return { elm, errors, warnings };
}

// Messages as `file:line:col text`, in file and position order.
function report({ errors, warnings }) {
  const order = (a, b) =>
    (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) || a.line - b.line || a.col - b.col;
  for (const m of [...warnings].sort(order)) process.stderr.write(`${m.file}:${m.line}:${m.col} ${m.text}\n`);
  for (const m of [...errors].sort(order)) process.stderr.write(`${m.file}:${m.line}:${m.col} ${m.text}\n`);
  if (errors.length > 0) process.exit(1);
}

function readStdin() {
  try {
    return fs.readFileSync(0, "utf8");
  } catch (err) {
    fail(`cannot read stdin: ${err.message}`);
  }
}

function fromStdin() {
  let request;
  try {
    request = JSON.parse(readStdin());
  } catch (err) {
    fail(`stdin is not JSON: ${err.message}`);
  }
  const given = request?.libraries;
  if (given == null || typeof given !== "object" || Array.isArray(given)) {
    fail('stdin must be {"libraries": {"Name": "cql text", ...}}');
  }
  const libraries = new Map();
  for (const [name, source] of Object.entries(given)) {
    if (typeof source !== "string") fail(`library ${name}: CQL text must be a string`);
    libraries.set(name, { source, label: name });
  }
  const result = translateAll(libraries);
  report(result);
  const out = {};
  for (const name of [...result.elm.keys()].sort()) out[name] = result.elm.get(name);
  writeStdout(`${JSON.stringify(out)}\n`);
}

function fromFiles(args) {
  let outDir = null;
  const files = [];
  for (let i = 0; i < args.length; i += 1) {
    if (args[i] === "--out") {
      outDir = args[i + 1];
      if (!outDir) fail("--out needs a directory");
      i += 1;
    } else if (args[i].startsWith("--out=")) {
      outDir = args[i].slice("--out=".length);
    } else if (args[i] === "-h" || args[i] === "--help") {
      writeStdout("usage: node translate.mjs [--out DIR] Name.cql ...  |  node translate.mjs < {\"libraries\": {...}}\n");
      process.exit(0);
    } else if (args[i].startsWith("-")) {
      fail(`unknown option ${args[i]}`);
    } else {
      files.push(args[i]);
    }
  }
  if (files.length === 0) fail("no .cql files given");
  const libraries = new Map();
  for (const file of files) {
    const name = path.basename(file).replace(/\.cql$/i, "");
    if (libraries.has(name)) fail(`two files for library ${name}`);
    let source;
    try {
      source = fs.readFileSync(file, "utf8");
    } catch (err) {
      fail(`cannot read ${file}: ${err.message}`);
    }
    libraries.set(name, { source, label: file, file });
  }
  const result = translateAll(libraries);
  report(result);
  if (outDir) fs.mkdirSync(outDir, { recursive: true });
  for (const [name, elm] of result.elm) {
    const target = path.join(outDir ?? path.dirname(libraries.get(name).file), `${name}.json`);
    fs.writeFileSync(target, `${JSON.stringify(elm, null, 2)}\n`);
  }
}

const args = process.argv.slice(2);
if (args.length === 0) fromStdin();
else fromFiles(args);
