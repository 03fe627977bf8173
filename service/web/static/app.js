// clustermatch workspace: search, actor pages, shortlist, competence map.
//
// Plain JavaScript, no build step, no third-party code. Every view reads its state from the URL
// (so a link reproduces it), calls the v1 API and builds the page with DOM methods; text from
// the API is only ever set as text (textContent), never parsed as HTML.
"use strict";

// --- small DOM helpers ----------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
const $ = (selector, root = document) => root.querySelector(selector);
const main = () => document.getElementById("main");
const KIND_LABELS = {
  description: "Descriptions",
  workshop_note: "Workshop notes",
  patent: "Patents",
  self_assessment: "Self-assessments",
};
const DOC_KIND = {
  description: "description",
  workshop_note: "workshop note",
  patent: "patent",
  self_assessment: "self-assessment",
};
const KIND_NOUNS = {
  company: "a company",
  research: "a research institute",
  university: "a university",
  cluster: "a cluster",
  public: "a public body",
  other: "another kind of actor",
};
const FEEDBACK = [
  ["relevant", "Relevant"],
  ["contacted", "Contacted"],
  ["met", "Met"],
  ["not_relevant", "Not relevant"],
];

function actorUrl(id) {
  return "/actors/" + id.split("/").map(encodeURIComponent).join("/");
}

function where(actor) {
  const country = actor.country || "country unknown";
  return actor.region && actor.region !== actor.country ? `${country} · ${actor.region}` : country;
}

function setTitle(text) {
  document.title = `${text} · clustermatch`;
}

// --- the API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

const KEY = "clustermatch.key";
let signingIn = null;

function apiKey() {
  return sessionStorage.getItem(KEY);
}

function keyScope() {
  // The shortlist belongs to whoever is signed in: the key id, never the secret.
  const key = apiKey();
  return key ? key.split("_")[1] || "key" : "open";
}

async function api(method, path, { params, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    for (const item of [].concat(value)) {
      if (item !== undefined && item !== null && item !== "" && item !== false) {
        url.searchParams.append(name, String(item));
      }
    }
  }
  const headers = { Accept: "application/json" };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "The service cannot be reached", "Check that clustermatch is running.");
  }
  if (response.status === 401) {
    await signIn(apiKey() ? "That key was not accepted; try another." : "");
    return api(method, path, { params, body });
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const title = (data && data.title) || `Error ${response.status}`;
    throw new ApiError(response.status, title, data && data.detail);
  }
  return { status: response.status, data };
}

function signIn(message) {
  // One dialog for all requests that hit a 401 at the same time.
  if (signingIn) return signingIn;
  const dialog = document.getElementById("signin");
  const input = document.getElementById("signin-key");
  $("#signin-error").textContent = message || "";
  signingIn = new Promise((resolve) => {
    const form = document.getElementById("signin-form");
    const done = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      form.removeEventListener("submit", done);
      dialog.close();
      input.value = "";
      signingIn = null;
      showSignOut();
      renderShortlistCount();
      resolve();
    };
    form.addEventListener("submit", done);
    dialog.addEventListener("cancel", (event) => event.preventDefault());
  });
  dialog.showModal();
  input.focus();
  return signingIn;
}

function showSignOut() {
  const button = document.getElementById("signout");
  button.hidden = !apiKey();
}

function problem(error) {
  const box = el("div", { class: "problem", role: "alert" });
  box.append(el("strong", { text: error.title || "Something went wrong" }));
  if (error.detail && error.detail !== error.title) box.append(el("p", { text: error.detail }));
  return box;
}

// --- index state and empty store ------------------------------------------------------------

let watching = null;

async function indexState() {
  const status = document.getElementById("status");
  try {
    const [{ data: index }, { data: actors }] = await Promise.all([
      api("GET", "/v1/index"),
      api("GET", "/v1/actors", { params: { limit: 1 } }),
    ]);
    status.replaceChildren();
    if (index.state === "building") {
      status.append(
        el("p", { class: "banner" }, "A rebuild of the index is in progress; results come from the ",
          index.generation ? `current generation (${index.generation})` : "previous generation",
          " until it is done."),
      );
      if (!watching) watching = setInterval(() => indexState(), 3000);
    } else if (watching) {
      clearInterval(watching);
      watching = null;
    }
    return { index, total: actors.total };
  } catch (error) {
    status.replaceChildren(problem(error));
    return null;
  }
}

function emptyStore() {
  return el(
    "section",
    { class: "empty", "aria-labelledby": "empty-title" },
    el("h2", { id: "empty-title", text: "No actors yet" }),
    el("p", { text: "The store is empty. Load data on the server, then come back:" }),
    el(
      "ul",
      {},
      el("li", {}, el("code", { text: "clustermatch demo" }), " loads the bundled demo data (5,681 CORDIS organisations) and builds the index;"),
      el("li", {}, el("code", { text: "clustermatch ingest profiles.jsonl" }), " then ", el("code", { text: "clustermatch reindex" }), " loads your own profiles;"),
      el("li", {}, "or ", el("code", { text: "PUT /v1/actors/{id}" }), " and ", el("code", { text: "POST /v1/actors/bulk" }), " (see ", el("a", { href: "/docs", text: "the API" }), ")."),
    ),
  );
}

function noMapYet() {
  // Search works before a first rebuild (every write is searched live); the map needs one.
  return el(
    "section",
    { class: "empty" },
    el("h2", { text: "No map yet" }),
    el("p", {}, "The map is drawn from a built index generation. Run ", el("code", { text: "clustermatch reindex" }),
      " or ", el("code", { text: "POST /v1/index/rebuild" }), " (admin), then reload."),
  );
}

// --- shortlist (kept in this browser, per signed-in key) -------------------------------------

function shortlistKey() {
  return `clustermatch.shortlist.${keyScope()}`;
}

function shortlist() {
  try {
    return JSON.parse(localStorage.getItem(shortlistKey()) || "[]");
  } catch {
    return [];
  }
}

function saveShortlist(items) {
  localStorage.setItem(shortlistKey(), JSON.stringify(items));
  renderShortlistCount();
}

function onShortlist(id) {
  return shortlist().some((item) => item.id === id);
}

function renderShortlistCount() {
  const count = document.getElementById("shortlist-count");
  if (count) count.textContent = String(shortlist().length);
}

// --- suggestion cards (search results and actor suggestions) --------------------------------

function highlighted(text, terms) {
  // Key terms are lemmas; mark the words of the passage that start like one of them.
  const stems = (terms || []).flatMap((t) => t.toLowerCase().split(/\s+/)).filter((t) => t.length > 2);
  const node = el("span");
  if (!stems.length) {
    node.textContent = text;
    return node;
  }
  for (const part of text.split(/(\p{L}[\p{L}\p{N}]*)/u)) {
    const lower = part.toLowerCase();
    // "blades" for the lemma "blade"; "turbin" would be too loose ("turbinate").
    const hit = stems.some((stem) => lower.startsWith(stem) || (lower.length >= 4 && stem.startsWith(lower)));
    node.append(hit && /\p{L}/u.test(part) ? el("mark", { text: part }) : document.createTextNode(part));
  }
  return node;
}

function reasonOf(match, context) {
  const best = match.evidence[0];
  const terms = match.evidence.flatMap((e) => e.key_terms || []);
  const unique = [...new Set(terms)].slice(0, 3);
  const shared = unique.length ? unique.map((t) => `“${t}”`).join(", ") : null;
  let reason;
  if (context.mode === "complement") {
    reason = shared ? `Offers what is needed: ${shared}` : "Its competences answer the stated needs";
  } else {
    reason = shared ? `Shares ${shared}` : "Closest passages in meaning";
  }
  if (best) reason += ` (best match in a ${DOC_KIND[best.document_kind] || best.document_kind}, similarity ${best.score.toFixed(2)})`;
  const about = context.actor;
  if (about) {
    const parts = [];
    // An unknown country is never "the same" as another unknown one (as in the API's filters).
    if (match.actor.country && match.actor.country === about.country) parts.push("same country");
    else parts.push(match.actor.country ? `from ${match.actor.country}` : "country unknown");
    if (about.sectors.length && match.actor.sectors.length) {
      const same = match.actor.sectors.some((s) => about.sectors.includes(s));
      parts.push(same ? "same sector" : "another sector");
    }
    const noun = KIND_NOUNS[match.actor.kind] || match.actor.kind;
    parts.push(match.actor.kind === about.kind ? `also ${noun}` : noun);
    reason += `; ${parts.join(", ")}`;
  }
  // Partners both already work with: who could introduce them (the partner-network signal).
  const common = match.shared_partners || [];
  const names = common.map((id, i) => (match.shared_partner_names || [])[i] || id);
  if (common.length) reason += `; ${common.length} partner${common.length > 1 ? "s" : ""} in common (${names.join(", ")}): ask for an introduction`;
  return reason + ".";
}

function feedbackBody(match, context, label) {
  const body = { actor_id: match.actor.id, label };
  if (context.forActor) body.for_actor = context.forActor;
  if (context.query) body.query = context.query;
  return body;
}

function card(match, context, current) {
  const actor = match.actor;
  const reason = reasonOf(match, context);
  const item = el("li", { class: "card", "data-actor": actor.id });
  const heading = el(
    "div",
    { class: "card-head" },
    el("h3", {}, el("a", { href: actorUrl(actor.id), text: actor.name })),
    el("span", { class: "score", title: "score (comparable within this list)", text: match.score.toFixed(3) }),
  );
  const facts = el(
    "p",
    { class: "facts" },
    el("span", { class: "badge", text: actor.kind }),
    el("span", { class: "badge", text: where(actor) }),
    ...actor.sectors.slice(0, 3).map((s) => el("span", { class: "badge subtle", text: s })),
  );
  const passages = el("div", { class: "evidence" });
  for (const evidence of match.evidence.slice(0, 2)) {
    passages.append(
      el(
        "blockquote",
        {},
        el("span", { class: "doc", text: `${DOC_KIND[evidence.document_kind] || evidence.document_kind} · ${evidence.score.toFixed(2)}` }),
        " ",
        highlighted(evidence.text, evidence.key_terms),
      ),
    );
  }
  const listed = onShortlist(actor.id);
  const add = el("button", {
    type: "button",
    class: "add",
    "aria-pressed": listed ? "true" : "false",
    text: listed ? "On shortlist ✓" : "Add to shortlist",
  });
  add.addEventListener("click", () => {
    const items = shortlist();
    if (items.some((i) => i.id === actor.id)) {
      saveShortlist(items.filter((i) => i.id !== actor.id));
      add.textContent = "Add to shortlist";
      add.setAttribute("aria-pressed", "false");
      return;
    }
    items.push({
      id: actor.id,
      name: actor.name,
      kind: actor.kind,
      country: actor.country,
      region: actor.region || "",
      sectors: actor.sectors.join(" "),
      suggested_for: context.label,
      reason,
      score: match.score,
      note: "",
      added_at: new Date().toISOString().slice(0, 19) + "Z",
    });
    saveShortlist(items);
    add.textContent = "On shortlist ✓";
    add.setAttribute("aria-pressed", "true");
  });
  const group = el("div", { class: "feedback", role: "group", "aria-label": `Feedback on ${actor.name}` });
  const buttons = FEEDBACK.map(([label, text]) => {
    const button = el("button", {
      type: "button",
      "data-label": label,
      "aria-pressed": current === label ? "true" : "false",
      text,
    });
    button.addEventListener("click", async () => {
      try {
        await api("POST", "/v1/feedback", { body: feedbackBody(match, context, label) });
      } catch (error) {
        group.append(problem(error));
        return;
      }
      for (const b of buttons) b.setAttribute("aria-pressed", b === button ? "true" : "false");
      if (label === "not_relevant") dismissed(item, match, context);
    });
    return button;
  });
  group.append(...buttons);
  item.append(
    heading,
    facts,
    el("p", { class: "reason", text: reason }),
    passages,
    el("div", { class: "card-actions" }, add, group),
  );
  return item;
}

function dismissed(item, match, context) {
  const undo = el("button", { type: "button", class: "link", text: "Undo" });
  const line = el(
    "li",
    { class: "dismissed", "data-actor": match.actor.id },
    el("span", { text: `${match.actor.name} is marked not relevant and will not be suggested here again. ` }),
    undo,
  );
  undo.addEventListener("click", async () => {
    await api("POST", "/v1/feedback", { body: feedbackBody(match, context, "relevant") });
    line.replaceWith(card(match, context, "relevant"));
  });
  item.replaceWith(line);
  undo.focus();
}

async function currentFeedback(params) {
  try {
    const { data } = await api("GET", "/v1/feedback", { params });
    return Object.fromEntries(data.feedback.map((f) => [f.actor_id, f.label]));
  } catch {
    return {};
  }
}

function toggle(name, label, checked, disabled, hint) {
  const id = `toggle-${name}`;
  return el(
    "label",
    { class: "toggle", for: id },
    el("input", { type: "checkbox", id, name, checked, disabled, "aria-describedby": hint ? `${id}-hint` : null }),
    " ",
    label,
    hint ? el("span", { class: "hint", id: `${id}-hint`, text: hint }) : null,
  );
}

// --- search page ----------------------------------------------------------------------------

const FILTERS = ["country", "region", "kind", "sector", "cluster"];
const FACET_LABELS = { country: "Country", kind: "Kind", sector: "Sector", region: "Region", cluster: "Cluster" };

async function searchPage() {
  const params = new URLSearchParams(location.search);
  const q = (params.get("q") || "").trim();
  const forActor = params.get("for");
  const state = await indexState();
  const root = main();
  root.replaceChildren();
  setTitle(q ? `“${q}”` : "Search");
  if (state && state.total === 0) {
    root.append(emptyStore());
    return;
  }
  let about = null;
  if (forActor) {
    try {
      about = (await api("GET", `/v1/actors/${encodeURIComponent(forActor)}`)).data;
    } catch (error) {
      root.append(problem(error));
    }
  }
  const form = el("form", { class: "search", role: "search", action: "/", method: "get" });
  const input = el("input", { type: "search", id: "q", name: "q", value: q, placeholder: "e.g. offshore wind turbine blade materials, or a name", autocomplete: "off", required: true });
  form.append(
    el("label", { for: "q", class: "big", text: "Search actors by competence or by name" }),
    el("div", { class: "row" }, input, el("button", { type: "submit", class: "primary", text: "Search" })),
  );
  if (about) {
    form.append(
      el("input", { type: "hidden", name: "for", value: about.id }),
      el("p", { class: "for" }, "Searching partners for ", el("a", { href: actorUrl(about.id), text: about.name }), " ",
        el("a", { class: "remove", href: `/?${new URLSearchParams({ q })}`, "aria-label": `Stop searching for ${about.name}`, text: "×" })),
    );
  }
  const toggles = el(
    "fieldset",
    { class: "toggles" },
    el("legend", { text: "Show" }),
    toggle("new", "New contacts only", params.get("new") === "1"),
    toggle("other-country", "Other countries only", params.getAll("other").includes("country"), !about, about ? null : "needs an actor to compare with: search from its page"),
    toggle("other-sector", "Other sectors only", params.getAll("other").includes("sector"), !about),
  );
  form.append(toggles);
  // On a phone the filters would push every result below the fold: folded there, open on desks.
  const filters = el("div", { class: "filters", id: "filters" });
  const chosen = FILTERS.reduce((n, name) => n + params.getAll(name).length, 0);
  form.append(
    el("details", { class: "filter-box", open: chosen > 0 || !matchMedia("(max-width: 820px)").matches },
      el("summary", { text: chosen ? `Filters (${chosen} chosen)` : "Filters" }), filters),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(searchUrl(form));
  });
  form.addEventListener("change", (event) => {
    if (event.target.matches("input[type=checkbox]") && input.value.trim()) navigate(searchUrl(form));
  });
  const layout = el("div", { class: "layout" });
  const results = el("section", { class: "results", "aria-labelledby": "results-title", "aria-busy": "true" });
  layout.append(el("aside", { class: "side" }, form), results);
  root.append(layout);
  if (!q) {
    results.removeAttribute("aria-busy");
    results.append(el("h2", { id: "results-title", class: "visually-hidden", text: "Results" }),
      el("p", { class: "hint big-hint", text: "Describe a competence in any of the five languages (English, German, Italian, Swedish, Romanian), or type an actor's name." }));
    input.focus();
    return;
  }
  const search = {
    q,
    limit: 20,
    explain: true,
    for_actor: about ? about.id : null,
    new_contacts_only: params.get("new") === "1",
    exclude_same: about ? params.getAll("other") : [],
  };
  for (const name of FILTERS) search[name] = params.getAll(name);
  results.append(el("p", { class: "loading", text: "Searching…" }));
  const context = { query: q, forActor: about ? about.id : null, actor: about, label: about ? `for ${about.name}: ${q}` : `search: ${q}`, mode: "similar" };
  const [named, found, feedback] = await Promise.allSettled([
    api("GET", "/v1/actors", { params: { q, limit: 5 } }),
    api("GET", "/v1/search", { params: search }),
    currentFeedback(about ? { for_actor: about.id } : { query: q }),
  ]);
  results.replaceChildren(el("h2", { id: "results-title", class: "visually-hidden", text: "Results" }));
  results.removeAttribute("aria-busy");
  if (named.status === "fulfilled" && named.value.data.actors.length) {
    results.append(
      el("section", { class: "named", "aria-labelledby": "named-title" },
        el("h2", { id: "named-title", text: `Actors named like “${q}”` }),
        el("ul", {}, named.value.data.actors.map((a) => el("li", {}, el("a", { href: actorUrl(a.id), text: a.name }), ` · ${a.kind} · ${where(a)}`)))),
    );
  }
  if (found.status === "rejected") {
    results.append(problem(found.reason));
    return;
  }
  const data = found.value.data;
  renderFacets(filters, data.facets, params);
  const heading = el("h2", { id: "matches-title", text: data.results.length ? `Actors whose competences match “${q}”` : "No matching actors" });
  results.append(heading);
  if (!data.results.length) {
    results.append(el("p", { class: "hint", text: "Try other words, fewer filters, or switch off “new contacts only”." }));
    return;
  }
  const list = el("ol", { class: "cards", "aria-labelledby": "matches-title" });
  const labels = feedback.status === "fulfilled" ? feedback.value : {};
  for (const match of data.results) list.append(card(match, context, labels[match.actor.id]));
  results.append(list, el("p", { class: "meta", text: `generation ${data.generation} · model ${data.model}` }));
}

function renderFacets(container, facets, params) {
  container.replaceChildren();
  for (const [name, counts] of Object.entries(facets || {})) {
    const entries = Object.entries(counts);
    const chosen = params.getAll(name);
    for (const value of chosen) if (!(value in counts)) entries.push([value, 0]);
    if (!entries.length) continue;
    const fieldset = el("fieldset", { class: "facet" }, el("legend", { text: FACET_LABELS[name] || name }));
    entries.slice(0, 12).forEach(([value, count], n) => {
      const id = `facet-${name}-${n}`;
      fieldset.append(
        el("label", { for: id, class: "check" },
          el("input", { type: "checkbox", id, name, value, checked: chosen.includes(value) }),
          ` ${value} `, el("span", { class: "count", text: String(count) })),
      );
    });
    container.append(fieldset);
  }
  for (const name of ["region", "cluster"]) {
    if (facets && name in facets) continue;
    const id = `filter-${name}`;
    container.append(
      el("div", { class: "text-filter" },
        el("label", { for: id, text: name === "region" ? "Region (NUTS code or prefix)" : "Cluster id" }),
        el("input", { id, name, value: params.getAll(name).join(","), placeholder: name === "region" ? "e.g. AT3" : "" })),
    );
  }
}

function searchUrl(form) {
  const data = new FormData(form);
  const out = new URLSearchParams();
  out.set("q", String(data.get("q") || "").trim());
  if (data.get("for")) out.set("for", String(data.get("for")));
  if (data.get("new")) out.set("new", "1");
  if (data.get("other-country")) out.append("other", "country");
  if (data.get("other-sector")) out.append("other", "sector");
  for (const name of FILTERS) {
    for (const value of data.getAll(name)) {
      for (const part of String(value).split(",")) if (part.trim()) out.append(name, part.trim());
    }
  }
  return `/?${out}`;
}

function navigate(url) {
  history.pushState(null, "", url);
  route();
}

// --- actor page -----------------------------------------------------------------------------

async function actorPage() {
  const id = decodeURIComponent(location.pathname.replace(/^\/actors\//, ""));
  const params = new URLSearchParams(location.search);
  const root = main();
  root.replaceChildren(el("p", { class: "loading", text: "Loading…" }));
  await indexState();
  let actor;
  try {
    actor = (await api("GET", `/v1/actors/${encodeURIComponent(id)}`)).data;
  } catch (error) {
    root.replaceChildren(problem(error), el("p", {}, el("a", { href: "/", text: "Back to search" })));
    setTitle("Actor not found");
    return;
  }
  setTitle(actor.name);
  const profile = el("article", { class: "profile", "aria-labelledby": "actor-name" });
  profile.append(
    el("h1", { id: "actor-name", text: actor.name }),
    el("p", { class: "facts" },
      el("span", { class: "badge", text: actor.kind }),
      el("span", { class: "badge", text: where(actor) }),
      ...actor.sectors.map((s) => el("span", { class: "badge subtle", text: `sector ${s}` })),
      ...actor.clusters.map((c) => el("span", { class: "badge subtle", text: `cluster ${c}` })),
      actor.url ? el("a", { href: actor.url, rel: "noopener noreferrer", target: "_blank", text: actor.url }) : null),
  );
  if (actor.partners.length) {
    profile.append(
      el("details", { class: "partners" },
        el("summary", { text: `Known partners: ${actor.partners.length}` }),
        el("ul", {}, actor.partners.slice(0, 200).map((p) => el("li", {}, el("a", { href: actorUrl(p), text: p })))),
        actor.partners.length > 200 ? el("p", { class: "hint", text: `and ${actor.partners.length - 200} more` }) : null),
    );
  }
  const byKind = {};
  for (const doc of actor.documents) (byKind[doc.kind] ||= []).push(doc);
  for (const kind of Object.keys(KIND_LABELS)) {
    const docs = byKind[kind];
    if (!docs) continue;
    const section = el("section", { class: "documents" }, el("h2", { text: `${KIND_LABELS[kind]} (${docs.length})` }));
    for (const doc of docs) section.append(documentView(doc));
    profile.append(section);
  }
  if (actor.hidden_documents) {
    profile.append(el("p", { class: "hint", text: `${actor.hidden_documents} more document${actor.hidden_documents > 1 ? "s are" : " is"} not visible to you (network or private to another agency).` }));
  }
  const searchFor = el("form", { class: "search-for", action: "/", method: "get" },
    el("label", { for: "for-q", text: `Search partners for ${actor.name}` }),
    el("div", { class: "row" },
      el("input", { type: "search", id: "for-q", name: "q", required: true, placeholder: "e.g. recycling of rotor blades" }),
      el("input", { type: "hidden", name: "for", value: actor.id }),
      el("button", { type: "submit", text: "Search" })));
  const options = el("fieldset", { class: "toggles" },
    el("legend", { text: "Show" }),
    toggle("new", "New contacts only", params.get("new") === "1"),
    toggle("other-country", "Other countries only", params.getAll("other").includes("country")),
    toggle("other-sector", "Other sectors only", params.getAll("other").includes("sector")));
  options.addEventListener("change", () => {
    const out = new URLSearchParams();
    if ($("#toggle-new").checked) out.set("new", "1");
    if ($("#toggle-other-country").checked) out.append("other", "country");
    if ($("#toggle-other-sector").checked) out.append("other", "sector");
    history.replaceState(null, "", `${location.pathname}${out.size ? "?" + out : ""}`);
    loadSuggestions(actor, suggestions);
  });
  const suggestions = el("div", { class: "suggestions" });
  const side = el("section", { class: "suggested", "aria-labelledby": "suggested-title" },
    el("h2", { id: "suggested-title", text: "Suggested partners" }), options, suggestions, searchFor);
  root.replaceChildren(el("div", { class: "layout actor" }, profile, side));
  loadSuggestions(actor, suggestions);
}

function documentView(doc) {
  const badges = [
    el("span", { class: "badge", title: "language", text: doc.language || "?" }),
    el("span", { class: `badge vis-${doc.visibility}`, title: "visibility", text: doc.visibility }),
  ];
  if (doc.intent) badges.push(el("span", { class: `badge intent-${doc.intent}`, text: doc.intent }));
  for (const code of doc.codes || []) badges.push(el("span", { class: "badge subtle", text: code }));
  const long = doc.text.length > 600;
  const body = long
    ? el("details", {}, el("summary", { text: doc.text.slice(0, 400).trimEnd() + "…" }), el("p", { text: doc.text }))
    : el("p", { text: doc.text });
  return el("div", { class: "document" },
    el("h3", {}, doc.title || doc.id, " ", ...badges), body);
}

async function loadSuggestions(actor, container) {
  const params = new URLSearchParams(location.search);
  const common = {
    actor_id: actor.id,
    limit: 10,
    explain: true,
    exclude_same: params.getAll("other").filter((v) => v === "country" || v === "sector"),
    new_contacts_only: params.get("new") === "1",
  };
  container.replaceChildren(el("p", { class: "loading", text: "Finding partners…" }));
  const labels = await currentFeedback({ for_actor: actor.id });
  const sections = [];
  for (const [mode, title] of [["similar", "Similar actors"], ["complement", "Complementary: offers that answer its needs"]]) {
    const section = el("section", { class: `mode mode-${mode}`, "aria-labelledby": `mode-${mode}` }, el("h3", { id: `mode-${mode}`, text: title }));
    sections.push(section);
    const context = { forActor: actor.id, actor, mode, label: `${mode === "similar" ? "similar to" : "complements"} ${actor.name}` };
    try {
      const { data } = await api("POST", "/v1/match", { body: { ...common, mode } });
      if (!data.matches.length) {
        section.append(el("p", { class: "hint", text: "No suggestions with these options." }));
      } else {
        const list = el("ol", { class: "cards" });
        for (const match of data.matches) list.append(card(match, context, labels[match.actor.id]));
        section.append(list);
      }
    } catch (error) {
      if (mode === "complement" && error.status === 422) {
        section.append(el("p", { class: "hint", text: "This actor states no needs (documents with intent “need”), so there is nothing to complement yet." }));
      } else {
        section.append(problem(error));
      }
    }
  }
  container.replaceChildren(...sections);
}

// --- shortlist page -------------------------------------------------------------------------

const CSV_COLUMNS = ["id", "name", "kind", "country", "region", "sectors", "suggested_for", "reason", "note", "score", "added_at", "link"];

function csvCell(value) {
  const text = value === undefined || value === null ? "" : String(value);
  // Quote always; a leading = + - @ would be run as a formula by spreadsheet programs.
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return `"${safe.replace(/"/g, '""')}"`;
}

function shortlistCsv(items) {
  const rows = items.map((item) => ({ ...item, link: new URL(actorUrl(item.id), location.origin).href }));
  return [CSV_COLUMNS.join(","), ...rows.map((row) => CSV_COLUMNS.map((c) => csvCell(row[c])).join(","))].join("\r\n") + "\r\n";
}

function shortlistPage() {
  setTitle("Shortlist");
  const root = main();
  const items = shortlist();
  const heading = el("h1", { text: "Shortlist" });
  if (!items.length) {
    root.replaceChildren(heading, el("section", { class: "empty" },
      el("p", { text: "Nothing on the shortlist yet: add suggestions from a search or an actor page with “Add to shortlist”." }),
      el("p", {}, el("a", { href: "/", text: "Go to search" }))));
    return;
  }
  const exportButton = el("button", { type: "button", class: "primary", id: "export-csv", text: "Export CSV" });
  exportButton.addEventListener("click", () => {
    const blob = new Blob(["\ufeff" + shortlistCsv(shortlist())], { type: "text/csv;charset=utf-8" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `shortlist-${new Date().toISOString().slice(0, 10)}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
  const clear = el("button", { type: "button", text: "Clear the list" });
  clear.addEventListener("click", () => {
    if (confirm("Remove every actor from the shortlist?")) {
      saveShortlist([]);
      shortlistPage();
    }
  });
  const table = el("table", { class: "shortlist" },
    el("caption", { class: "visually-hidden", text: "Shortlisted actors" }),
    el("thead", {}, el("tr", {}, ["Actor", "Suggested", "Why (note)", ""].map((h) => el("th", { scope: "col", text: h })))));
  const body = el("tbody");
  items.forEach((item, n) => {
    const note = el("textarea", { id: `note-${n}`, rows: 2, placeholder: "Why this actor? (note)" });
    note.value = item.note || "";
    note.addEventListener("input", () => {
      const all = shortlist();
      const stored = all.find((i) => i.id === item.id);
      if (stored) stored.note = note.value;
      saveShortlist(all);
    });
    const remove = el("button", { type: "button", class: "link", "aria-label": `Remove ${item.name}`, text: "Remove" });
    remove.addEventListener("click", () => {
      saveShortlist(shortlist().filter((i) => i.id !== item.id));
      shortlistPage();
    });
    body.append(el("tr", {},
      el("td", {}, el("a", { href: actorUrl(item.id), text: item.name }), el("br"), el("span", { class: "hint", text: `${item.kind} · ${item.country}` })),
      el("td", {}, el("span", { text: item.suggested_for || "" }), el("br"), el("span", { class: "hint", text: item.reason || "" })),
      el("td", {}, el("label", { for: `note-${n}`, class: "visually-hidden", text: `Note on ${item.name}` }), note),
      el("td", {}, remove)));
  });
  table.append(body);
  root.replaceChildren(heading,
    el("p", { class: "hint", text: `${items.length} actor${items.length > 1 ? "s" : ""}, kept in this browser. Notes are saved as you type them.` }),
    el("div", { class: "toolbar" }, exportButton, clear),
    el("div", { class: "table-wrap" }, table));
}

// --- competence map -------------------------------------------------------------------------

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"];
const REST = "#b8b8b8";

function categoryOf(point, by) {
  if (by === "kind" || by === "country") return point[by] || "(none)";
  const values = by === "sector" ? point.sectors : point.clusters;
  return values.length ? values[0] : "(none)";
}

async function mapPage() {
  setTitle("Competence map");
  const root = main();
  const params = new URLSearchParams(location.search);
  const state = await indexState();
  if (state && state.total === 0) {
    root.replaceChildren(emptyStore());
    return;
  }
  root.replaceChildren(el("h1", { text: "Competence map" }), el("p", { class: "loading", text: "Loading the map…" }));
  let data;
  for (;;) {
    try {
      const response = await api("GET", "/v1/map");
      data = response.data;
      if (response.status !== 202) break;
      root.replaceChildren(el("h1", { text: "Competence map" }),
        el("p", { class: "loading", role: "status", text: `Computing the map of generation ${data.generation}; this takes up to a minute after each rebuild…` }));
      await new Promise((resolve) => setTimeout(resolve, 2000));
    } catch (error) {
      root.replaceChildren(el("h1", { text: "Competence map" }), problem(error));
      return;
    }
  }
  if (data.state === "empty") {
    root.replaceChildren(el("h1", { text: "Competence map" }), noMapYet());
    return;
  }
  const by = ["kind", "country", "sector", "cluster"].includes(params.get("colour")) ? params.get("colour") : "kind";
  const colourSelect = el("select", { id: "colour-by", name: "colour" },
    ["kind", "country", "sector", "cluster"].map((v) => el("option", { value: v, selected: v === by, text: v })));
  const find = el("input", { type: "search", id: "map-find", placeholder: "name", autocomplete: "off", value: params.get("find") || "" });
  const controls = el("form", { class: "map-controls", role: "search" },
    el("div", {}, el("label", { for: "colour-by", text: "Colour by" }), colourSelect),
    el("div", {}, el("label", { for: "map-find", text: "Find actors on the map" }), find));
  controls.addEventListener("submit", (event) => event.preventDefault());
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "-10 -10 1020 1020");
  svg.setAttribute("class", "map");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Map of ${data.points.length} actors; similar actors are close together. The name search beside it reaches each one by keyboard.`);
  const tooltip = el("div", { class: "tooltip", hidden: true, "aria-hidden": "true" });
  const legend = el("ul", { class: "legend", "aria-label": "Colours" });
  const found = el("ul", { class: "found", "aria-live": "polite" });
  const dots = [];
  for (const point of data.points) {
    const link = document.createElementNS(SVG, "a");
    link.setAttribute("href", actorUrl(point.id));
    link.setAttribute("tabindex", "-1");
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", String(point.x * 1000));
    dot.setAttribute("cy", String((1 - point.y) * 1000));
    dot.setAttribute("r", "5");
    dot.setAttribute("data-id", point.id);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${point.name} (${point.kind}, ${point.country})`;
    dot.append(title);
    link.append(dot);
    svg.append(link);
    dots.push({ point, dot });
    dot.addEventListener("mouseenter", (event) => {
      tooltip.textContent = `${point.name} · ${point.kind} · ${where(point)}`;
      tooltip.hidden = false;
      const box = svg.getBoundingClientRect();
      tooltip.style.left = `${event.clientX - box.left + 12}px`;
      tooltip.style.top = `${event.clientY - box.top + 12}px`;
    });
    dot.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  }
  function colour() {
    const chosen = colourSelect.value;
    const counts = {};
    for (const { point } of dots) counts[categoryOf(point, chosen)] = (counts[categoryOf(point, chosen)] || 0) + 1;
    const top = Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length).map(([v]) => v);
    const colours = Object.fromEntries(top.map((v, n) => [v, PALETTE[n]]));
    for (const { point, dot } of dots) dot.setAttribute("fill", colours[categoryOf(point, chosen)] || REST);
    legend.replaceChildren(...top.map((v) => el("li", {}, el("span", { class: "swatch", style: null, "data-colour": colours[v] }), `${v} (${counts[v]})`)));
    const rest = Object.keys(counts).length - top.length;
    if (rest > 0) legend.append(el("li", {}, el("span", { class: "swatch", "data-colour": REST }), `${rest} more`));
    for (const swatch of legend.querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.colour;
  }
  function highlight() {
    const words = find.value.trim().toLowerCase();
    const hits = [];
    for (const { point, dot } of dots) {
      const hit = words && point.name.toLowerCase().includes(words);
      dot.classList.toggle("hit", Boolean(hit));
      dot.classList.toggle("dim", Boolean(words) && !hit);
      if (hit) hits.push(point);
    }
    for (const { dot } of dots) if (dot.classList.contains("hit")) dot.parentNode.parentNode.append(dot.parentNode);
    found.replaceChildren(...hits.slice(0, 10).map((p) => el("li", {}, el("a", { href: actorUrl(p.id), text: p.name }), ` · ${p.kind} · ${p.country}`)));
    if (words && !hits.length) found.append(el("li", { class: "hint", text: "No actor of that name on the map." }));
    if (hits.length > 10) found.append(el("li", { class: "hint", text: `and ${hits.length - 10} more` }));
  }
  colourSelect.addEventListener("change", () => {
    colour();
    const out = new URLSearchParams(location.search);
    out.set("colour", colourSelect.value);
    history.replaceState(null, "", `/map?${out}`);
  });
  find.addEventListener("input", highlight);
  colour();
  highlight();
  root.replaceChildren(
    el("h1", { text: "Competence map" }),
    el("p", { class: "hint", text: `${data.points.length.toLocaleString("en")} actors of generation ${data.generation}: each point is an actor's profile (${data.method === "tsne" ? "t-SNE" : "PCA"} of its passage vectors); similar actors sit close together. Hover for the name, click to open.` }),
    el("div", { class: "map-layout" },
      el("div", { class: "map-side" }, controls, found, legend),
      el("div", { class: "map-wrap" }, svg, tooltip)),
  );
}

// --- routing --------------------------------------------------------------------------------

function route() {
  const page = location.pathname.startsWith("/actors/")
    ? "actor"
    : { "/": "search", "/shortlist": "shortlist", "/map": "map" }[location.pathname] || "search";
  document.body.dataset.page = page;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = { search: searchPage, actor: actorPage, shortlist: shortlistPage, map: mapPage }[page];
  return Promise.resolve(view()).catch((error) => {
    main().replaceChildren(problem(error));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  showSignOut();
  renderShortlistCount();
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  window.addEventListener("popstate", route);
  route();
});
