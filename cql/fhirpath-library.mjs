// Evaluates a published scoring Library (text/fhirpath, `define "name": expr`)
// with fhirpath.js, as an evaluator other than the payer's would: each answer
// name is the item's answers read from the response by linkId (typed by the
// R4 model, as `answer.value`), a name declared absent is empty, %as_of is the
// evaluation date, and each definition's result is the variable of its name
// for the definitions after it.
//
// stdin:  {"answers": {name: linkId}, "absent": [name], "definitions": [[name, expression]],
//          "cases": [{"response": QuestionnaireResponse, "as_of": "YYYY-MM-DD"}]}
// stdout: [{name: result (JSON) | {"error": message}}] — one object per case.
// With "rounds": N in the request (bench/bench_score.py's anchor), each
// definition compiled once and the answers read once per case, untimed; then
// every definition evaluated for every case, N times: stdout
// {"msPerResponse": median of the rounds, per case}.
import fhirpath from "fhirpath";
import r4 from "fhirpath/fhir-context/r4/index.js";

const TYPED = { resolveInternalTypes: false };

function readStdin() {
  return new Promise((resolve) => {
    let text = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk) => (text += chunk));
    process.stdin.on("end", () => resolve(JSON.parse(text)));
  });
}

function quoted(linkId) {
  return "'" + linkId.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'";
}

function evaluateCase(request, testCase) {
  const response = testCase.response;
  const vars = {};
  for (const [name, linkId] of Object.entries(request.answers)) {
    const path = `QuestionnaireResponse.repeat(item).where(linkId = ${quoted(linkId)}).answer.value`;
    vars[name] = fhirpath.evaluate(response, path, null, r4, TYPED);
  }
  for (const name of request.absent) vars[name] = [];
  vars.as_of = fhirpath.evaluate({}, `@${testCase.as_of}`, null, r4, TYPED);
  const results = {};
  for (const [name, expression] of request.definitions) {
    try {
      const typed = fhirpath.evaluate(response, expression, vars, r4, TYPED);
      vars[name] = typed;
      results[name] = fhirpath.resolveInternalTypes(typed);
    } catch (error) {
      vars[name] = [];
      results[name] = { error: String(error.message || error) };
    }
  }
  return results;
}

function answerVariables(request, testCase) {
  const vars = {};
  for (const [name, linkId] of Object.entries(request.answers)) {
    const path = `QuestionnaireResponse.repeat(item).where(linkId = ${quoted(linkId)}).answer.value`;
    vars[name] = fhirpath.evaluate(testCase.response, path, null, r4, TYPED);
  }
  for (const name of request.absent) vars[name] = [];
  vars.as_of = fhirpath.evaluate({}, `@${testCase.as_of}`, null, r4, TYPED);
  return vars;
}

function timed(request) {
  const compiled = request.definitions.map(([name, expression]) => [
    name,
    fhirpath.compile(expression, r4, TYPED),
  ]);
  const prepared = request.cases.map((c) => [c.response, answerVariables(request, c)]);
  const samples = [];
  for (let round = 0; round < request.rounds; round++) {
    const start = process.hrtime.bigint();
    for (const [response, answers] of prepared) {
      const vars = { ...answers };
      for (const [name, run] of compiled) vars[name] = run(response, vars);
    }
    samples.push(Number(process.hrtime.bigint() - start) / 1e6 / prepared.length);
  }
  samples.sort((a, b) => a - b);
  return { msPerResponse: samples[Math.floor(samples.length / 2)] };
}

const request = await readStdin();
const result = request.rounds
  ? timed(request)
  : request.cases.map((c) => evaluateCase(request, c));
process.stdout.write(JSON.stringify(result));
