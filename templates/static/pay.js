// paypage: progressive help for the payment page. Everything works without it.
(function () {
  "use strict";
  var brands = [
    [/^220[0-4]/, "mir", "MIR", 3], [/^(222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)/, "mastercard", "Mastercard", 3],
    [/^5[1-5]/, "mastercard", "Mastercard", 3], [/^3[47]/, "amex", "American Express", 4],
    [/^35(2[89]|[3-8]\d)/, "jcb", "JCB", 3], [/^4/, "visa", "Visa", 3]
  ];
  function detect(d) {
    for (var i = 0; i < brands.length; i++) if (brands[i][0].test(d)) return brands[i];
    return null;
  }
  function group(d, amex) {
    var g = amex ? [4, 6, 5] : [4, 4, 4, 4, 3], out = [], i = 0;
    for (var j = 0; j < g.length && i < d.length; j++) { out.push(d.substr(i, g[j])); i += g[j]; }
    return out.join(" ");
  }
  var num = document.getElementById("number"), brand = document.getElementById("brand"), cvc = document.getElementById("cvc");
  if (num) {
    num.addEventListener("input", function () {
      var d = num.value.replace(/\D/g, "").slice(0, 19), b = detect(d), caret = num.selectionStart === num.value.length;
      var v = group(d, b && b[1] === "amex");
      if (v !== num.value) { num.value = v; if (caret) num.setSelectionRange(v.length, v.length); }
      brand.textContent = b ? b[2] : "";
      brand.setAttribute("data-brand", b ? b[1] : "");
      if (cvc) { cvc.maxLength = b ? b[3] : 4; cvc.placeholder = b && b[3] === 4 ? "••••" : "•••"; }
    });
  }
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();
  var form = document.getElementById("card-form");
  if (form) form.addEventListener("submit", function () {
    var b = document.getElementById("pay");
    setTimeout(function () { b.disabled = true; }, 0); // one click, one payment attempt
  });
  var auto = document.querySelector("form[data-autosubmit]");
  if (auto) setTimeout(function () { auto.submit(); }, 300);
  var cd = document.querySelector("[data-expires]");
  if (cd) {
    var end = Date.parse(cd.getAttribute("data-expires"));
    var tick = function () {
      var s = Math.max(0, Math.round((end - Date.now()) / 1000));
      cd.textContent = Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
      if (s > 0) setTimeout(tick, 1000);
    };
    tick();
  }
  var poll = document.querySelector("[data-poll]");
  if (poll) {
    var url = poll.getAttribute("data-poll");
    var check = function () {
      fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) { return r.json(); }).then(function (j) {
        if (j.done) { window.location.replace(j.next); } else { setTimeout(check, 2000); }
      }).catch(function () { setTimeout(check, 4000); });
    };
    setTimeout(check, 2000);
  }
})();
