// English is the language the page's messages are written in (see ../i18n.js): this
// catalogue holds only the plural forms English needs.
export default {
  "{count} attempts": { "one": "{count} attempt", "other": "{count} attempts" },
  "{count} days": { "one": "{count} day", "other": "{count} days" },
  "{count} words written": { "one": "{count} word written", "other": "{count} words written" },
};
