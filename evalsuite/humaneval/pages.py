"""Server-rendered HTML of the rater form (Jinja2, autoescaped; no scripts, no external resources)."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Listening test{% endblock %}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.side { border: 1px solid #bbb; border-radius: 6px; padding: .8rem; }
.text { white-space: pre-wrap; max-height: 24rem; overflow-y: auto; }
.prompt { white-space: pre-wrap; background: #f4f4f4; padding: .6rem; border-radius: 6px; }
audio { width: 100%; margin-bottom: .5rem; }
fieldset { margin-top: 1rem; } label { margin-right: 1.5rem; }
textarea { width: 100%; box-sizing: border-box; } .note { color: #555; } .error { color: #a00; }
progress { width: 100%; }
</style></head>
<body>{% block body %}{% endblock %}</body></html>
"""

_PAIR = """{% extends "base.html" %}
{% block title %}Pair {{ position }} of {{ total }}{% endblock %}
{% block body %}
<p class="note">Pair {{ position }} of {{ total }} &middot; {{ done }} answered</p>
<progress value="{{ done }}" max="{{ total }}"></progress>
<h1>Which response is better?</h1>
<h2>Prompt</h2>
<div class="prompt">{{ item.prompt }}</div>
<div class="sides">
{% for side in ("left", "right") %}
  <section class="side" id="{{ side }}">
    <h2>{{ side | capitalize }}</h2>
    {% if item[side].audio %}<audio controls preload="none" src="{{ base }}/a/{{ item[side].audio }}"></audio>{% endif %}
    <div class="text">{{ item[side].text }}</div>
  </section>
{% endfor %}
</div>
<form method="post" action="{{ base }}/p/{{ item.pair_id }}">
  <fieldset><legend>Your choice</legend>
  {% for value, label in (("left", "Left is better"), ("tie", "About the same"), ("right", "Right is better")) %}
    <label><input type="radio" name="choice" value="{{ value }}" required
      {% if current and current[0] == value %}checked{% endif %}> {{ label }}</label>
  {% endfor %}
  </fieldset>
  <p><label for="comment">Comment (optional)</label><br>
  <textarea id="comment" name="comment" rows="3" maxlength="{{ max_comment }}">{{ current[1] if current else "" }}</textarea></p>
  <input type="hidden" name="rev" value="{{ current[2] if current else 0 }}">
  {% if current %}<p class="note">You answered this pair already; submitting replaces your answer.</p>{% endif %}
  <button type="submit">Submit</button>
</form>
<p>{% if prev %}<a href="{{ base }}/p/{{ prev }}">&larr; previous pair</a>{% endif %}
   {% if next %} &nbsp; <a href="{{ base }}/p/{{ next }}">next pair &rarr;</a>{% endif %}
   &nbsp; <a href="{{ base }}">overview</a></p>
{% endblock %}
"""

_OVERVIEW = """{% extends "base.html" %}
{% block body %}
<h1>{% if done == total %}All done, thank you!{% else %}Listening test{% endif %}</h1>
<p class="note">{{ done }} of {{ total }} pairs answered.</p>
<progress value="{{ done }}" max="{{ total }}"></progress>
{% if next %}<p><a href="{{ base }}/p/{{ next }}">Continue with the next unanswered pair</a></p>{% endif %}
<p>You can close this page and come back with the same link at any time. To change an answer, open its pair:</p>
<ol>{% for pid, answered in pairs %}<li><a href="{{ base }}/p/{{ pid }}">pair {{ loop.index }}</a>
  {% if answered %}(answered){% endif %}</li>{% endfor %}</ol>
{% endblock %}
"""

_ERROR = """{% extends "base.html" %}
{% block title %}Error {{ status }}{% endblock %}
{% block body %}<h1>Error {{ status }}</h1><p class="error">{{ message }}</p>{% endblock %}
"""

env = Environment(
    loader=DictLoader({"base.html": _BASE, "pair.html": _PAIR, "overview.html": _OVERVIEW, "error.html": _ERROR}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def render(name: str, **context) -> str:
    return env.get_template(name).render(**context)
