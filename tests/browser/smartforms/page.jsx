// The page the Smart Forms test renders each package Questionnaire on: CSIRO's
// renderer (@aehrc/smart-forms-renderer) as its documentation wires it —
// buildForm() into its stores, then BaseRenderer inside its theme and query
// client providers — and nothing of ours between it and the form. The test
// calls window.smartForms.render(questionnaire), answers(linkId) to see an
// answer taken and, once filled,
// window.smartForms.response(): the renderer's own final response
// (getResponse, then removeEmptyAnswersFromResponse and
// removeInternalIdsFromResponse, as the Smart Forms app does before saving).
import React from "react";
import { createRoot } from "react-dom/client";
import { QueryClientProvider } from "@tanstack/react-query";
import {
  BaseRenderer,
  RendererThemeProvider,
  buildForm,
  getResponse,
  removeEmptyAnswersFromResponse,
  removeInternalIdsFromResponse,
  useRendererQueryClient,
} from "@aehrc/smart-forms-renderer";

function Renderer() {
  const queryClient = useRendererQueryClient();
  return (
    <RendererThemeProvider>
      <QueryClientProvider client={queryClient}>
        <BaseRenderer />
      </QueryClientProvider>
    </RendererThemeProvider>
  );
}

let current = null;
const root = createRoot(document.getElementById("form"));

window.smartForms = {
  async render(questionnaire) {
    current = questionnaire;
    await buildForm({ questionnaire });
    root.render(<Renderer />);
  },
  answers(linkId) {
    // the answers the renderer holds for an item now (before any cleanup)
    const found = [];
    const visit = (items) => {
      for (const item of items || []) {
        if (item.linkId === linkId) found.push(...(item.answer || []));
        visit(item.item);
        for (const answer of item.answer || []) visit(answer.item);
      }
    };
    visit(getResponse().item);
    return found;
  },
  response() {
    const cleaned = removeEmptyAnswersFromResponse(current, getResponse());
    return removeInternalIdsFromResponse(current, cleaned);
  },
};
