// ESLint's rules for the project's own JavaScript: the portal's script, which
// the browser loads as a classic script, and the CQL tools, Node.js ES
// modules. eslint's recommended rules, with the globals each one runs among.
// scripts/test runs it from the repository root, which the paths here are
// relative to:
//
//   scripts/eslint/node_modules/.bin/eslint --config scripts/eslint/eslint.config.mjs service/static cql
import js from "@eslint/js";
import globals from "globals";

export default [
  {
    // the LHC-Forms bundle scripts/install-lforms copies in is not ours
    // (node_modules/ folders are ignored by default)
    ignores: ["service/static/lforms/"],
  },
  {
    files: ["service/static/*.js"],
    ...js.configs.recommended,
    languageOptions: {
      sourceType: "script",
      globals: {
        ...globals.browser,
        // set by LHC-Forms' bundle, which the portal page loads before it
        LForms: "readonly",
      },
    },
  },
  {
    files: ["cql/*.mjs"],
    ...js.configs.recommended,
    languageOptions: {
      sourceType: "module",
      globals: { ...globals.node },
    },
  },
];
