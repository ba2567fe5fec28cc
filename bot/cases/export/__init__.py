"""``!case export``: what a case room still holds, as a PDF and a FHIR R4 Bundle, delivered
to the requester alone as an encrypted attachment. Pure builders here; the Matrix side is in
`bot.cases.export.nio_port`, the command in `bot.cases.export.command`."""
