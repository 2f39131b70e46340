# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # How every Django module reaches a Django project.
    DOCUMENTATION = r'''
options:
  project_path:
    description:
      - Directory of the Django project, the one that holds C(manage.py). Django runs with this as its working
        directory and first on its import path, exactly as C(manage.py) would.
    type: path
    required: true
  virtualenv:
    description:
      - Virtual environment the project runs in; its C(bin/python) runs Django.
      - Mutually exclusive with O(python).
    type: path
    aliases: [venv]
  python:
    description:
      - Interpreter that runs Django, as a path or a name looked up on E(PATH).
      - Defaults to the O(virtualenv)'s interpreter when that is given, else C(python3).
      - The module itself does not need Django; this interpreter does.
    type: str
  settings:
    description:
      - Django settings module (E(DJANGO_SETTINGS_MODULE)), for example C(shopsite.settings.production).
      - Defaults to E(DJANGO_SETTINGS_MODULE) from O(environment) or the task's environment, else to what
        C(manage.py) sets with C(os.environ.setdefault).
    type: str
  environment:
    description:
      - Extra environment variables for Django, for settings that read the environment (database host, name,
        media root, feature switches).
      - Values are shown in the task's invocation; put passwords and keys in O(secret_environment).
    type: dict
    default: {}
  secret_environment:
    description:
      - Like O(environment), for secrets (database password, E(SECRET_KEY)). Ansible masks these values in
        every result and log line.
      - They reach Django only through its process environment, never a command line or a file.
    type: dict
    default: {}
  database:
    description:
      - Alias of the database in Django's E(DATABASES) setting.
    type: str
    default: default
  timeout:
    description:
      - Seconds after which Django is stopped and the task fails. No limit when omitted.
    type: int
notes:
  - Django runs as a subprocess of the project's interpreter through a small helper program that this collection
    ships; the helper answers in JSON through a file in a private 0700 temporary directory, never through screen
    text. Django 4.2 LTS and 5.2 LTS are supported and tested.
'''
