"""The Helm chart charts/teeroute: its values as typed models (`values`) and the files
generated from them (`generate`, `readme`; `teeroute chart generate|check`)."""
