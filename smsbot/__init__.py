"""smsbot: an SMS short-code command processor (10086-style 0000 menus, charge reminders, data-usage
alerts, itemized bills, complaints) over SMPP 3.4, with its state in Redis. README.md says how the
modules fit together ("How it works")."""
