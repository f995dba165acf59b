// Posts the login as JSON; the answer sets the HttpOnly session cookie.
const form = document.getElementById("login");
const errorBox = document.getElementById("error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.textContent = "";
  const body = JSON.stringify({
    user: document.getElementById("user").value,
    password: document.getElementById("password").value,
  });
  let answer;
  try {
    answer = await fetch("/web/login", {
      method: "POST", body, credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
    });
  } catch (e) {
    errorBox.textContent = "ASCI is not answering; try again.";
    return;
  }
  if (answer.ok) {
    window.location.assign("/");
    return;
  }
  const detail = await answer.json().catch(() => ({}));
  errorBox.textContent = detail.error || `login failed (${answer.status})`;
});
