// Shared by the page and the viewer: JSON calls carrying the CSRF token from the page's meta tag.
export const csrf = document.querySelector('meta[name="csrf-token"]').content;

export async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  let answer;
  try {
    answer = await fetch(path, options);
  } catch (e) {
    throw new Error("ASCI is not answering; check your connection.");
  }
  if (answer.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const data = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(data.error || `request failed (${answer.status})`);
  return data;
}

// Builds an element; text only ever goes in through textContent.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}
