// A form generated from a module's offering template: its JSON Schema gives the fields and
// their types, its uiSchema the widgets, the order and the help texts. Nothing here knows
// the VPN module: another template gets its own form.
//
// Rules:
// - Fields: the schema's `required` names in their order, then the other `properties`,
//   unless the uiSchema's `ui:order` says otherwise ("*" stands for the rest). A required
//   name without a definition in `properties` gets a plain input (a number when it looks
//   like one).
// - `ui:widget: "hidden"`: fields the core fills in are left out; other hidden fields go in
//   a collapsed "Fields the template hides" section (still sent when filled in).
// - Widgets: `const` = read-only, `enum` = select (`ui:widget: "radio"` = radios),
//   boolean = checkbox, number/integer = number input, object = fieldset, array = JSON
//   text, `ui:widget: "textarea"` / `"password"` for strings, `examples` = suggestions.
// - Help: `ui:help`, and the schema's `description`. The schema wins on units of time:
//   where the help says minutes and the description seconds, the help is corrected to
//   seconds and the field is labelled in seconds.
// - Errors: the core's `[{pointer, message}]`, each shown by the field of its JSON pointer
//   (or its nearest parent; errors of no field go above the form).
'use strict';

const SchemaForm = (() => {
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const TIME_UNIT = /\b(second|minute|hour|day)s?\b/i;

  function unitOf(text) {
    const m = (text || '').match(TIME_UNIT);
    return m ? m[1].toLowerCase() : null;
  }

  // The help text, corrected where it disagrees with the schema on the unit of time.
  function helpOf(schema, ui) {
    let help = ui['ui:help'] || '';
    const unit = unitOf(schema.description);
    const said = unitOf(help);
    if (unit && said && unit !== said) {
      help = help.replace(new RegExp('\\b' + said + 's?\\b', 'gi'), unit + 's');
    }
    return { help, unit };
  }

  function pointerOf(parent, name) {
    return parent + '/' + String(name).replace(/~/g, '~0').replace(/\//g, '~1');
  }

  function order(schema, ui) {
    const names = [];
    for (const n of schema.required || []) if (!names.includes(n)) names.push(n);
    for (const n of Object.keys(schema.properties || {})) if (!names.includes(n)) names.push(n);
    const wanted = ui['ui:order'];
    if (!Array.isArray(wanted)) return names;
    const rest = names.filter((n) => !wanted.includes(n));
    const out = [];
    for (const n of wanted) {
      if (n === '*') out.push(...rest);
      else if (names.includes(n)) out.push(n);
    }
    if (!wanted.includes('*')) out.push(...rest);
    return out;
  }

  function typeOf(schema) {
    if (schema.const !== undefined) return 'const';
    if (Array.isArray(schema.enum)) return 'enum';
    const t = Array.isArray(schema.type) ? schema.type.find((x) => x !== 'null') : schema.type;
    return t || 'any';
  }

  // A number when the text is one, else the text (the core then names the field's type).
  function numberOrText(v) {
    const n = Number(v);
    return v !== '' && Number.isFinite(n) ? n : v;
  }

  // Builds the form into `container`. `template` = {schema, uiSchema}; `skip` = the fields
  // the core fills in. Returns {collect, showErrors, clearErrors}.
  function build(container, template, skip) {
    const fields = new Map(); // pointer -> {box, collect}
    const root = template.schema || {};
    const rootUi = template.uiSchema || {};
    const general = el('div', { id: 'form-errors', class: 'error', hidden: true });
    container.append(general);

    function field(name, schema, ui, pointer, required, hiddenBox, parentBox) {
      const kind = typeOf(schema);
      const { help, unit } = helpOf(schema, ui);
      const id = 'f' + pointer.replace(/[^A-Za-z0-9]/g, '_');
      const title = ui['ui:title'] || schema.title || name;
      const label = el('label', { for: id }, title, required ? ' *' : '',
        unit ? el('span', { class: 'unit', text: ` (${unit}s)` }) : null,
        el('span', { class: 'key', text: name }));
      let input;
      let collect;
      if (kind === 'object') {
        const box = el('fieldset', { 'data-pointer': pointer },
          el('legend', { text: title + (required ? ' *' : '') }));
        const parts = [];
        const props = schema.properties || {};
        for (const n of order(schema, ui)) {
          const sub = field(n, props[n] || {}, ui[n] || {}, pointerOf(pointer, n),
            (schema.required || []).includes(n), null, box);
          if (sub) parts.push([n, sub]);
        }
        if (help) box.append(el('div', { class: 'help', text: help }));
        fields.set(pointer, { box });
        (parentBox || hiddenBox).append(box);
        return () => {
          const v = {};
          for (const [n, c] of parts) {
            const x = c();
            if (x !== undefined) v[n] = x;
          }
          return Object.keys(v).length || required ? v : undefined;
        };
      }
      if (kind === 'const') {
        input = el('input', { id, name: pointer, value: String(schema.const), readonly: true });
        collect = () => schema.const;
      } else if (kind === 'enum' && ui['ui:widget'] === 'radio') {
        input = el('div', { id });
        for (const o of schema.enum) {
          input.append(el('label', {},
            el('input', { type: 'radio', name: pointer, value: String(o) }), ' ', String(o), ' '));
        }
        collect = () => {
          const c = input.querySelector('input:checked');
          return c ? schema.enum.find((o) => String(o) === c.value) : undefined;
        };
      } else if (kind === 'enum') {
        input = el('select', { id, name: pointer },
          el('option', { value: '', text: 'choose…' }),
          schema.enum.map((o) => el('option', { value: String(o), text: String(o) })));
        collect = () => (input.value === '' ? undefined
          : schema.enum.find((o) => String(o) === input.value));
      } else if (kind === 'boolean') {
        input = el('input', { id, name: pointer, type: 'checkbox', checked: schema.default === true });
        collect = () => input.checked;
      } else if (kind === 'number' || kind === 'integer') {
        input = el('input', { id, name: pointer, type: 'number',
          step: kind === 'integer' ? '1' : 'any', placeholder: ui['ui:placeholder'] });
        collect = () => (input.value.trim() === '' ? (input.validity.badInput ? 'not a number' : undefined)
          : numberOrText(input.value.trim()));
      } else if (kind === 'array') {
        input = el('textarea', { id, name: pointer, rows: 3, placeholder: 'JSON array' });
        collect = () => {
          const t = input.value.trim();
          if (t === '') return undefined;
          try { return JSON.parse(t); } catch (_) { return t; }
        };
      } else {
        const widget = ui['ui:widget'];
        if (widget === 'textarea') input = el('textarea', { id, name: pointer, rows: 4 });
        else input = el('input', { id, name: pointer, type: widget === 'password' ? 'password' : 'text',
          placeholder: ui['ui:placeholder'] });
        if (Array.isArray(schema.examples) && input.tagName === 'INPUT') {
          const listId = id + '_examples';
          input.setAttribute('list', listId);
          container.append(el('datalist', { id: listId },
            schema.examples.map((x) => el('option', { value: String(x) }))));
        }
        collect = () => {
          const t = input.value.trim();
          if (t === '') return undefined;
          return kind === 'any' ? numberOrText(t) : t;
        };
      }
      if (schema.default !== undefined && 'value' in input && input.type !== 'checkbox') {
        input.value = String(schema.default);
      }
      const box = el('div', { class: 'field', 'data-pointer': pointer }, label, input,
        help ? el('div', { class: 'help', text: help }) : null,
        schema.description && schema.description !== help
          ? el('div', { class: 'help', text: schema.description }) : null);
      fields.set(pointer, { box });
      (parentBox || hiddenBox).append(box);
      return collect;
    }

    const form = el('form', { class: 'schema-form', novalidate: true });
    const hidden = el('details', { class: 'hidden-fields' },
      el('summary', { text: 'Fields the template hides' }));
    const hiddenBody = el('div');
    hidden.append(hiddenBody);
    const parts = [];
    const props = root.properties || {};
    for (const n of order(root, rootUi)) {
      if (skip.includes(n)) continue;
      const ui = rootUi[n] || {};
      const isHidden = ui['ui:widget'] === 'hidden';
      const c = field(n, props[n] || {}, ui, pointerOf('', n), (root.required || []).includes(n),
        isHidden ? hiddenBody : form, isHidden ? hiddenBody : null);
      if (c) parts.push([n, c]);
    }
    if (hiddenBody.children.length) form.append(hidden);
    container.append(form);

    function collect() {
      const v = {};
      for (const [n, c] of parts) {
        const x = c();
        if (x !== undefined) v[n] = x;
      }
      return v;
    }

    function clearErrors() {
      general.hidden = true;
      general.textContent = '';
      for (const { box } of fields.values()) {
        box.classList.remove('invalid');
        for (const e of box.querySelectorAll(':scope > .field-error')) e.remove();
      }
    }

    // Each error by the field of its pointer, or of its nearest parent, or above the form.
    function showErrors(errors) {
      clearErrors();
      for (const e of errors) {
        let p = e.pointer || '';
        while (p && !fields.has(p)) p = p.slice(0, p.lastIndexOf('/'));
        const target = p ? fields.get(p) : null;
        if (!target) {
          general.hidden = false;
          general.append(el('div', { text: (e.pointer ? e.pointer + ': ' : '') + e.message }));
          continue;
        }
        target.box.classList.add('invalid');
        const suffix = p === e.pointer ? '' : ` (${e.pointer})`;
        target.box.append(el('div', { class: 'field-error', 'data-pointer': e.pointer,
          text: e.message + suffix }));
        const d = target.box.closest('details');
        if (d) d.open = true;
      }
      const first = container.querySelector('.invalid, #form-errors:not([hidden])');
      if (first) first.scrollIntoView({ block: 'center' });
    }

    return { form, collect, showErrors, clearErrors };
  }

  return { el, build, helpOf, order };
})();
